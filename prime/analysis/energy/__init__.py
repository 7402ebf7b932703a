"""Energy and latency: counting operations of real runs (:mod:`.counting`), cost models
(:mod:`.models`) and the ``prime bench energy`` report (:mod:`.report`)."""
