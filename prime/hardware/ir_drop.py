"""Wire resistance (IR drop) in a passive memristor crossbar tile: an exact and a fast model.

The circuit (the geometry of MemTorch's passive crossbar solver), ``rows x cols`` cells::

    v_in[b,0] -[r_driver]-[r_w]-+--[r_w]--+--[r_w]--+        word line 0 (open right end)
                                |         |         |
                              g[0,0]    g[0,1]    g[0,2]     cells: word node -> bit node
                                |         |         |
                               [r_b]     [r_b]     [r_b]     bit-line segments
    v_in[b,1] -[r_driver]-[r_w]-+--[r_w]--+--[r_w]--+        word line 1
                                |         |         |
                              g[1,0]    g[1,1]    g[1,2]
                                |         |         |
                               [r_b]     [r_b]     [r_b]     one segment below the last row
                                |         |         |
                            [r_sense] [r_sense] [r_sense]
                                |         |         |
                               0 V       0 V       0 V       sense nodes: I[b, j] flows in here

Cell ``(i, j)`` sits ``j + 1`` word-line segments from row ``i``'s driver and ``rows - i``
bit-line segments above column ``j``'s sense node. Every segment and cell is a linear resistor:
this is a DC model, with no capacitance, no device non-linearity and no access devices.

* :func:`solve_tile` is the exact DC nodal analysis (scipy sparse LU, factorised once per tile
  and reused for every input vector of a batch).
* :func:`fast_tile` is a dense torch model for training and large runs: a few iterations of a
  fixed-point ("jacobi") or conjugate-gradient ("cg") solve of the same circuit, written on the
  cell voltages, differentiable with respect to ``g_us`` and ``v_in``.

Units everywhere: conductances in µS, voltages in V, resistances in Ω, currents in µA
(µS * V = µA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from prime.core.errors import PrimeError

__all__ = [
    "TRANSFER_MODELS",
    "WireParams",
    "crossbar_transfer",
    "fast_tile",
    "first_order_transfer",
    "solve_tile",
    "transfer_matrix",
]

_SIEMENS_PER_US = 1e-6
# The dense right-hand side block handed to the sparse solver at once: at most this many floats.
_RHS_BLOCK_FLOATS = 1 << 25


@dataclass(frozen=True)
class WireParams:
    """Resistances (Ω) of the crossbar's wires; 0 means an ideal wire.

    ``r_wordline_ohm``: each word-line segment (driver to cell 0, and between neighbouring cells).
    ``r_bitline_ohm``: each bit-line segment (between neighbouring cells, and last row to sense).
    ``r_driver_ohm``: series resistance of each row's voltage source.
    ``r_sense_ohm``: series resistance between each bit line's bottom and its 0 V sense node.
    """

    r_wordline_ohm: float
    r_bitline_ohm: float
    r_driver_ohm: float = 0.0
    r_sense_ohm: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise PrimeError(
                    f"WireParams.{f.name} = {value!r} is not a number; "
                    "give a resistance in ohms, e.g. 1.0 (0 means an ideal wire)"
                ) from None
            if not math.isfinite(number) or number < 0:
                raise PrimeError(
                    f"WireParams.{f.name} = {value!r} must be a finite resistance >= 0 ohms; "
                    "use 0 for an ideal wire or a positive value such as 1.0"
                )
            object.__setattr__(self, f.name, number)


# --------------------------------------------------------------------------------------------
# input checks


def _check_inputs(g_us: torch.Tensor, v_in: torch.Tensor, wire: WireParams) -> None:
    _check_tile(g_us, wire)
    _check_real_tensor("v_in", v_in)
    if v_in.ndim != 2:
        raise PrimeError(
            f"v_in must be 2-D [batch, rows] in volts, got shape {tuple(v_in.shape)}; "
            "for a single input vector use v_in.unsqueeze(0)"
        )
    if v_in.shape[1] != g_us.shape[0]:
        raise PrimeError(
            f"v_in has {v_in.shape[1]} rows per input but g_us has {g_us.shape[0]} rows "
            f"(v_in {tuple(v_in.shape)}, g_us {tuple(g_us.shape)}); v_in must be [batch, rows] "
            "with rows == g_us.shape[0] (transpose g_us or v_in if they are swapped)"
        )
    if bool((~torch.isfinite(v_in.detach())).any()):
        raise PrimeError("v_in contains NaN or inf voltages; pass finite input voltages (V)")


def _check_real_tensor(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise PrimeError(
            f"{name} must be a torch.Tensor, got {type(t).__name__}; "
            f"wrap it with torch.as_tensor({name}, dtype=torch.float64)"
        )
    if t.is_complex() or t.dtype == torch.bool:
        raise PrimeError(f"{name} has dtype {t.dtype}; pass a real floating tensor")


def _check_tile(g_us: torch.Tensor, wire: WireParams) -> None:
    if not isinstance(wire, WireParams):
        raise PrimeError(
            f"wire must be a WireParams, got {type(wire).__name__}; "
            "build one with WireParams(r_wordline_ohm=..., r_bitline_ohm=...)"
        )
    _check_real_tensor("g_us", g_us)
    if g_us.ndim != 2:
        raise PrimeError(
            f"g_us must be 2-D [rows, cols] in µS, got shape {tuple(g_us.shape)}; "
            "pass one tile at a time (loop over tiles or differential halves)"
        )
    if g_us.shape[0] == 0 or g_us.shape[1] == 0:
        raise PrimeError(
            f"g_us is an empty tile of shape {tuple(g_us.shape)}; a tile needs >= 1 row and column"
        )
    g = g_us.detach()
    if bool((~torch.isfinite(g)).any()):
        raise PrimeError(
            "g_us contains NaN or inf conductances; replace them (0 µS for an unformed cell)"
        )
    if bool((g < 0).any()):
        raise PrimeError(
            f"g_us contains negative conductances (min {float(g.min()):.4g} µS); conductances "
            "of a passive crossbar are >= 0: split signed weights into a differential pair"
        )


def _out_dtype(g_us: torch.Tensor, v_in: torch.Tensor) -> torch.dtype:
    dtype = torch.promote_types(g_us.dtype, v_in.dtype)
    return dtype if dtype.is_floating_point else torch.float64


def _siemens(r_ohm: float, what: str) -> float:
    """1 / r in S, or a PrimeError when it overflows (a tiny positive resistance)."""
    with np.errstate(divide="ignore", over="ignore"):
        g = float(np.float64(1.0) / np.float64(r_ohm))
    if not math.isfinite(g):
        raise PrimeError(
            f"{what} of {r_ohm!r} ohm is too small to invert (1/r overflows); "
            "use exactly 0 for an ideal wire"
        )
    return g


# --------------------------------------------------------------------------------------------
# exact model


@dataclass(frozen=True)
class _Network:
    """The tile's reduced nodal system: A x = E v,  I = C x + D v  (S, V, A)."""

    a: sp.csc_matrix  # [n, n] conductance matrix of the unknown node voltages
    e: sp.csr_matrix  # [n, rows] injection of the row source voltages
    c: sp.csr_matrix  # [cols, n] column currents from the unknown node voltages
    d: sp.csr_matrix  # [cols, rows] column currents straight from the sources


def _build_network(g_s: np.ndarray, wire: WireParams) -> _Network:
    """Assemble the nodal equations; zero-resistance wires merge their nodes exactly.

    Word-line nodes: one unknown per cell if ``r_wordline > 0``; one per row if only
    ``r_driver > 0`` (the whole line is one node); none if both are 0 (every node is at its
    source voltage). Bit-line nodes likewise with ``r_bitline`` and ``r_sense`` (0 V when fixed).
    """
    rows, cols = g_s.shape
    r_w, r_b = wire.r_wordline_ohm, wire.r_bitline_ohm
    r_d, r_s = wire.r_driver_ohm, wire.r_sense_ohm
    row_of_cell = np.repeat(np.arange(rows), cols).reshape(rows, cols)
    col_of_cell = np.tile(np.arange(cols), rows).reshape(rows, cols)

    # word-line unknowns
    w_idx: np.ndarray | None
    src_node: np.ndarray | None
    if r_w > 0:
        nw = rows * cols
        w_idx = np.arange(nw).reshape(rows, cols)
        src_node, g_src = w_idx[:, 0], _siemens(r_d + r_w, "r_driver + r_wordline")
    elif r_d > 0:
        nw = rows
        w_idx = row_of_cell.copy()
        src_node, g_src = np.arange(rows), _siemens(r_d, "r_driver")
    else:
        nw, w_idx, src_node, g_src = 0, None, None, 0.0
    # bit-line unknowns
    b_idx: np.ndarray | None
    sink_node: np.ndarray | None
    if r_b > 0:
        nb = rows * cols
        b_idx = nw + np.arange(nb).reshape(rows, cols)
        sink_node, g_sink = b_idx[-1, :], _siemens(r_b + r_s, "r_bitline + r_sense")
    elif r_s > 0:
        nb = cols
        b_idx = nw + col_of_cell
        sink_node, g_sink = nw + np.arange(cols), _siemens(r_s, "r_sense")
    else:
        nb, b_idx, sink_node, g_sink = 0, None, None, 0.0
    n = nw + nb

    ai: list[np.ndarray] = []
    aj: list[np.ndarray] = []
    av: list[np.ndarray] = []

    def stamp(p: np.ndarray, q: np.ndarray, g: np.ndarray | float) -> None:
        """A conductance g between unknown nodes p and q."""
        g = np.broadcast_to(np.asarray(g, dtype=np.float64), p.shape).ravel()
        p, q = p.ravel(), q.ravel()
        ai.extend([p, q, p, q])
        aj.extend([p, q, q, p])
        av.extend([g, g, -g, -g])

    def ground(p: np.ndarray, g: np.ndarray | float) -> None:
        """A conductance g from unknown node p to a fixed node."""
        ai.append(p.ravel())
        aj.append(p.ravel())
        av.append(np.broadcast_to(np.asarray(g, dtype=np.float64), p.shape).ravel())

    ei: list[np.ndarray] = []
    ej: list[np.ndarray] = []
    ev: list[np.ndarray] = []
    ci: list[np.ndarray] = []
    cj: list[np.ndarray] = []
    cv: list[np.ndarray] = []
    d = sp.csr_matrix((cols, rows))

    if w_idx is not None and src_node is not None:
        if r_w > 0 and cols > 1:
            stamp(w_idx[:, :-1], w_idx[:, 1:], _siemens(r_w, "r_wordline"))
        ground(src_node, g_src)
        ei.append(src_node)
        ej.append(np.arange(rows))
        ev.append(np.full(rows, g_src))
    if b_idx is not None and sink_node is not None:
        if r_b > 0 and rows > 1:
            stamp(b_idx[:-1, :], b_idx[1:, :], _siemens(r_b, "r_bitline"))
        ground(sink_node, g_sink)
        ci.append(np.arange(cols))
        cj.append(sink_node)
        cv.append(np.full(cols, g_sink))

    on = g_s > 0
    g_on, i_on, j_on = g_s[on], row_of_cell[on], col_of_cell[on]
    if w_idx is not None and b_idx is not None:
        stamp(w_idx[on], b_idx[on], g_on)
    elif w_idx is not None:  # bit lines fixed at 0 V: cell current goes straight to the sense
        ground(w_idx[on], g_on)
        ci.append(j_on)
        cj.append(w_idx[on])
        cv.append(g_on)
    elif b_idx is not None:  # word lines fixed at the source voltage
        ground(b_idx[on], g_on)
        ei.append(b_idx[on])
        ej.append(i_on)
        ev.append(g_on)
    else:
        d = sp.csr_matrix((g_on, (j_on, i_on)), shape=(cols, rows))

    def coo(i: list, j: list, v: list, shape: tuple[int, int]) -> sp.coo_matrix:
        if not v:
            return sp.coo_matrix(shape)
        return sp.coo_matrix((np.concatenate(v), (np.concatenate(i), np.concatenate(j))), shape)

    # elimination order: nested dissection over the cell grid (per-cell unknowns of a cell
    # together), merged per-row / per-column nodes last; it keeps the LU fill near O(n log n).
    cells = _nested_dissection(rows, cols)
    per_cell = [
        idx.ravel()[cells] for idx, r in ((w_idx, r_w), (b_idx, r_b)) if r > 0 and idx is not None
    ]
    order = [np.stack(per_cell, axis=1).ravel()] if per_cell else []
    if r_w == 0 and w_idx is not None:
        order.append(np.arange(rows))
    if r_b == 0 and b_idx is not None:
        order.append(nw + np.arange(cols))
    perm = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    a = coo(ai, aj, av, (n, n)).tocsr()[perm][:, perm]
    return _Network(
        a=a.tocsc(),
        e=coo(ei, ej, ev, (n, rows)).tocsr()[perm],
        c=coo(ci, cj, cv, (cols, n)).tocsc()[:, perm].tocsr(),
        d=d,
    )


def _nested_dissection(rows: int, cols: int, leaf: int = 8) -> np.ndarray:
    """The cells (flat index ``i * cols + j``) in a nested-dissection order of the grid.

    Each region is split by its middle row or column (the longer side); the two halves come
    first, the separating line last. Word lines only run along rows and bit lines down
    columns, so a full line of cells separates the halves.
    """
    out: list[np.ndarray] = []

    def split(r0: int, r1: int, c0: int, c1: int) -> None:
        h, w = r1 - r0, c1 - c0
        if h <= 0 or w <= 0:
            return
        if h * w <= leaf:
            out.append((np.arange(r0, r1)[:, None] * cols + np.arange(c0, c1)).ravel())
        elif w >= h:
            m = (c0 + c1) // 2
            split(r0, r1, c0, m)
            split(r0, r1, m + 1, c1)
            out.append(np.arange(r0, r1) * cols + m)
        else:
            m = (r0 + r1) // 2
            split(r0, m, c0, c1)
            split(m + 1, r1, c0, c1)
            out.append(m * cols + np.arange(c0, c1))

    split(0, rows, 0, cols)
    return np.concatenate(out)


def _singular(reason: str) -> PrimeError:
    return PrimeError(
        f"the crossbar's nodal equations could not be solved ({reason}); check that the wire "
        "resistances are not extreme (e.g. 1e-300 ohm) and the conductances are plausible µS values"
    )


def _factorise(net: _Network) -> spla.SuperLU | None:
    """The LU factors of the network's conductance matrix (None: no unknown node)."""
    if net.a.shape[0] == 0:
        return None
    try:
        return spla.splu(net.a, permc_spec="NATURAL", options={"SymmetricMode": True})
    except (RuntimeError, np.linalg.LinAlgError) as exc:
        raise _singular(f"sparse LU failed: {exc}") from None


def _transfer(net: _Network, lu: spla.SuperLU | None, rows: int) -> np.ndarray:
    """The transfer matrix T [cols, rows] (S): column currents ``I = T v`` for any input.

    ``T = D + C A^-1 E``; A is symmetric, so ``C A^-1 E = (E^T A^-1 C^T)^T``: solved with
    whichever of E's ``rows`` or C^T's ``cols`` right-hand sides are fewer.
    """
    transfer = net.d.toarray()
    if lu is None:
        return transfer
    cols = transfer.shape[0]
    block = max(1, _RHS_BLOCK_FLOATS // net.a.shape[0])
    if cols < rows:
        c_t = net.c.T.tocsc()
        e_t = net.e.T.tocsr()
        for s in range(0, cols, block):
            transfer[s : s + block] += (e_t @ lu.solve(c_t[:, s : s + block].toarray())).T
    else:
        e_csc = net.e.tocsc()
        for s in range(0, rows, block):
            transfer[:, s : s + block] += net.c @ lu.solve(e_csc[:, s : s + block].toarray())
    return transfer


def _finite(currents: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(currents)):
        raise _singular("the solution is not finite")
    return currents


def solve_tile(g_us: torch.Tensor, v_in: torch.Tensor, wire: WireParams) -> torch.Tensor:
    """Exact DC column currents of a passive crossbar tile with wire resistance.

    g_us: [rows, cols] cell conductances in µS (>= 0; 0 is an unformed cell).
    v_in: [batch, rows] row source voltages in V.
    wire: the wire resistances (Ω).
    Returns [batch, cols] currents in µA flowing into each column's sense node, in the
    promoted floating dtype of the inputs (computed in float64) on ``v_in``'s device. Not
    differentiable (use :func:`fast_tile` for gradients).

    With every resistance 0 it equals ``v_in @ g_us``. The sparse matrix (up to
    ``2 * rows * cols`` unknowns, nested-dissection ordered) is factorised once and all inputs
    are solved together; a 512 x 512 tile takes seconds (see docs/ir_drop.md). For many
    batches through the same cells, :func:`transfer_matrix` once and a matmul per batch.
    """
    _check_inputs(g_us, v_in, wire)
    out_dtype, device = _out_dtype(g_us, v_in), v_in.device
    g_s = g_us.detach().to("cpu", torch.float64).numpy() * _SIEMENS_PER_US
    v = v_in.detach().to("cpu", torch.float64).numpy()
    rows, cols = g_s.shape
    batch = v.shape[0]
    if batch == 0:
        return torch.zeros((0, cols), dtype=out_dtype, device=device)

    net = _build_network(g_s, wire)
    lu = _factorise(net)
    if batch > rows:  # fewer solves: the transfer matrix, applied to the batch
        currents = v @ _transfer(net, lu, rows).T
    else:
        currents = np.asarray(net.d @ v.T).T  # [batch, cols] A
        if lu is not None:
            block = max(1, _RHS_BLOCK_FLOATS // net.a.shape[0])
            for s in range(0, batch, block):
                x = lu.solve(np.asarray(net.e @ v[s : s + block].T))
                currents[s : s + block] += np.asarray(net.c @ x).T
    currents = _finite(currents)
    return torch.from_numpy(currents / _SIEMENS_PER_US).to(device=device, dtype=out_dtype)


def transfer_matrix(g_us: torch.Tensor, wire: WireParams) -> torch.Tensor:
    """The tile's exact transfer matrix G_eff [rows, cols] (µS): ``solve_tile(g_us, v, wire)
    == v @ G_eff`` for every input v, since the resistive network is linear in the row
    voltages (a row not driven is a source at 0 V).

    One factorisation and ``rows`` solves; then every input costs one matmul, as on an ideal
    crossbar. ``G_eff`` is ``g_us`` when every resistance is 0; with wires it is dense and
    >= 0 (sneak paths give a little current at unformed cells too). Not differentiable; in
    ``g_us``'s dtype (computed in float64) and on its device.
    """
    _check_tile(g_us, wire)
    dtype = g_us.dtype if g_us.dtype.is_floating_point else torch.float64
    g_s = g_us.detach().to("cpu", torch.float64).numpy() * _SIEMENS_PER_US
    net = _build_network(g_s, wire)
    transfer = _finite(_transfer(net, _factorise(net), g_s.shape[0]))
    return torch.from_numpy(transfer.T / _SIEMENS_PER_US).to(device=g_us.device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# fast model


def _wordline_drop(i_ua: torch.Tensor, wire: WireParams) -> torch.Tensor:
    """The voltage (V) lost from each row's driver to each cell, for cell currents i_ua
    [..., rows, cols] (µA): the segment into cell j carries every current at columns >= j."""
    suffix = i_ua.flip(-1).cumsum(-1).flip(-1)
    drop = wire.r_wordline_ohm * 1e-6 * suffix.cumsum(-1)  # V per µA
    if wire.r_driver_ohm:
        drop = drop + wire.r_driver_ohm * 1e-6 * suffix[..., :1]
    return drop


def wire_drop(i_ua: torch.Tensor, wire: WireParams) -> torch.Tensor:
    """R(I): the voltage across each cell lost to the wires, for cell currents I.

    i_ua: [batch, rows, cols] cell currents in µA. Returns volts, same shape: the word-line
    drop from the driver to the cell plus the rise of the bit line above its sense node.
    """
    # bit line: the segment below cell i carries every cell current at rows <= i
    prefix = i_ua.cumsum(-2)
    drop = _wordline_drop(i_ua, wire)
    drop = drop + wire.r_bitline_ohm * 1e-6 * prefix.flip(-2).cumsum(-2).flip(-2)
    if wire.r_sense_ohm:
        drop = drop + wire.r_sense_ohm * 1e-6 * prefix[..., -1:, :]
    return drop


def first_order_transfer(g_us: torch.Tensor, wire: WireParams) -> torch.Tensor:
    """The first-order (one Jacobi iteration) transfer matrix [rows, cols] (µS), in closed
    form and differentiable: ``v @ first_order_transfer(g, wire) == fast_tile(g, v, wire, 1)``.

    Row l alone at 1 V drives cell currents g[l, :] only; to first order cell (l, j) sees
    ``1 - c[l, j]`` volts, with ``c`` the word-line drop of row l's own currents plus the bit
    line's rise at row l from every cell of column j:
    ``sum_i g[i, j] (r_bitline (rows - max(i, l)) + r_sense)``. Cost O(rows * cols), batch
    free. Accurate while rho (see :func:`fast_tile`) is small; wrong beyond rho ~ 0.5.
    """
    _check_tile(g_us, wire)
    rows = g_us.shape[0]
    below = rows - torch.arange(rows, dtype=g_us.dtype, device=g_us.device)[:, None]
    upto = g_us.cumsum(0)  # sum_{i <= l} g[i, j]
    far = (g_us * below).flip(0).cumsum(0).flip(0) - g_us * below  # sum_{i > l} g (rows - i)
    rise = wire.r_bitline_ohm * 1e-6 * (below * upto + far)
    if wire.r_sense_ohm:
        rise = rise + wire.r_sense_ohm * 1e-6 * upto[-1:]
    return g_us * (1 - _wordline_drop(g_us, wire) - rise)


TRANSFER_MODELS = {"exact": transfer_matrix, "first-order": first_order_transfer}


def crossbar_transfer(
    cells_us: torch.Tensor,
    wire: WireParams,
    tile_rows: int | None,
    tile_columns: int | None,
    model: str = "exact",
) -> torch.Tensor:
    """G_eff [rows, cols] (µS) of a crossbar split onto tiles of ``tile_rows`` x
    ``tile_columns`` cells (None: the whole side), each tile its own passive array (its own
    drivers and sense nodes): the tiles' transfer matrices (``model``: "exact" or
    "first-order", :data:`TRANSFER_MODELS`) laid side by side."""
    if model not in TRANSFER_MODELS:
        raise PrimeError(f"IR-drop model {model!r} is unknown; use 'exact' or 'first-order'")
    transfer = TRANSFER_MODELS[model]
    rows, cols = cells_us.shape
    step_r, step_c = tile_rows or rows, tile_columns or cols
    return torch.cat(
        [
            torch.cat(
                [
                    transfer(cells_us[r : r + step_r, c : c + step_c], wire)
                    for c in range(0, cols, step_c)
                ],
                dim=1,
            )
            for r in range(0, rows, step_r)
        ]
    )


def fast_tile(
    g_us: torch.Tensor,
    v_in: torch.Tensor,
    wire: WireParams,
    iterations: int = 3,
    method: Literal["jacobi", "cg"] = "jacobi",
) -> torch.Tensor:
    """Approximate column currents with wire resistance, in dense, differentiable torch ops.

    g_us: [rows, cols] µS; v_in: [batch, rows] V. Returns [batch, cols] µA in the promoted
    dtype of the inputs, on their device; gradients flow to ``g_us`` and ``v_in``.

    The exact circuit, written on the cell voltages u [batch, rows, cols], is
    ``u = v - R(g * u)`` where R is the wires' resistance operator (suffix sums along each word
    line, prefix sums down each bit line: :func:`wire_drop`). Cost per iteration
    O(batch * rows * cols); memory a few [batch, rows, cols] tensors.

    ``method="jacobi"`` iterates ``u <- v - R(g * u)`` from the ideal ``u = v``: 0 iterations
    is the ideal ``v @ g``, 1 the first-order IR-drop model. It converges iff the spectral
    radius rho of R·G is < 1, its error shrinking by about rho per iteration; rho is roughly
    ``0.4 * g_mean * 1e-6 * (r_wordline * cols**2 + r_bitline * rows**2)`` (g_mean in µS,
    including unformed cells). Beyond rho = 1 it oscillates and diverges: use "cg" there.
    ``method="cg"`` runs conjugate gradients on the symmetric form of the same system; it
    converges for any resistance (much faster when the drop is large) and is exact after
    enough iterations.
    """
    _check_inputs(g_us, v_in, wire)
    if method not in ("jacobi", "cg"):
        raise PrimeError(f"fast_tile method {method!r} is unknown; use 'jacobi' or 'cg'")
    if not isinstance(iterations, int) or iterations < 0:
        raise PrimeError(f"fast_tile iterations = {iterations!r}; give an integer >= 0")
    dtype = _out_dtype(g_us, v_in)
    g = g_us.to(dtype)
    v = v_in.to(dtype)
    vb = v[:, :, None].expand(-1, -1, g.shape[1])  # [batch, rows, cols] ideal cell voltages
    if method == "jacobi":
        u = vb
        for _ in range(iterations):
            u = vb - wire_drop(g * u, wire)
        return (g * u).sum(-2)

    # CG on the symmetric form (I + G^1/2 R G^1/2) w = G^1/2 v, w = G^1/2 u, written back on u
    # (every CG vector is G^1/2 times a u-space vector), so only G appears: no sqrt, and
    # gradients stay finite at unformed (0 µS) cells. Inner products are <x, y>_G = sum x g y.
    def apply_a(x: torch.Tensor) -> torch.Tensor:  # (I + R G) x
        return x + wire_drop(g * x, wire)

    u = vb  # start from the ideal solution
    res = vb - apply_a(u)
    p = res
    rr = (res * g * res).sum((-2, -1), keepdim=True)
    for _ in range(iterations):
        ap = apply_a(p)
        pap = (p * g * ap).sum((-2, -1), keepdim=True)
        ok = pap > 0
        alpha = torch.where(ok, rr / torch.where(ok, pap, torch.ones_like(pap)), 0.0)
        u = u + alpha * p
        res = res - alpha * ap
        rr_new = (res * g * res).sum((-2, -1), keepdim=True)
        ok = rr > 0
        beta = torch.where(ok, rr_new / torch.where(ok, rr, torch.ones_like(rr)), 0.0)
        p = res + beta * p
        rr = rr_new
    return (g * u).sum(-2)
