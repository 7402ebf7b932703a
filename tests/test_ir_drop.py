"""IR drop in a passive crossbar tile: the exact solve against ngspice and closed forms, the fast
model against the exact one, and the input checks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import load_factor

from prime.core.errors import PrimeError
from prime.hardware.ir_drop import (
    WireParams,
    crossbar_transfer,
    fast_tile,
    first_order_transfer,
    solve_tile,
    transfer_matrix,
)

F64 = torch.float64


def random_tile(rows: int, cols: int, seed: int, zeros: float = 0.3) -> torch.Tensor:
    """Conductances 0-100 µS, about ``zeros`` of them unformed (0), float64 [rows, cols]."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.rand(rows, cols, generator=gen, dtype=F64) * 100.0
    return torch.where(torch.rand(rows, cols, generator=gen, dtype=F64) < zeros, 0.0, g)


def random_inputs(batch: int, rows: int, seed: int) -> torch.Tensor:
    """Analog vectors in [0, 1] V, one in [-1, 1] V and a sparse 0/1 spike vector: [batch, rows]."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.rand(batch, rows, generator=gen, dtype=F64)
    v[1] = v[1] * 2.0 - 1.0
    spikes = (torch.rand(rows, generator=gen, dtype=F64) < 0.2).to(F64)
    spikes[0] = 1.0  # at least one spike
    v[-1] = spikes
    return v


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Worst |got - ref| / |ref| over the entries, with a floor of 1e-6 of the largest |ref|."""
    floor = 1e-6 * float(ref.abs().max()) + 1e-30
    return float(((got - ref).abs() / ref.abs().clamp_min(floor)).max())


# --------------------------------------------------------------------------------------------
# ngspice


def spice_netlist(g_us: torch.Tensor, v_in: torch.Tensor, wire: WireParams) -> str:
    """The same circuit as a SPICE deck: one `op` per input vector, column currents printed
    from a 0 V ammeter source in series with each sense node."""
    assert wire.r_wordline_ohm > 0 and wire.r_bitline_ohm > 0
    rows, cols = g_us.shape
    lines = ["* passive crossbar with wire resistance"]
    for i in range(rows):
        lines.append(f"V{i} src{i} 0 DC {float(v_in[0, i])!r}")
        start = f"src{i}"
        if wire.r_driver_ohm > 0:
            lines.append(f"Rd{i} src{i} d{i} {wire.r_driver_ohm!r}")
            start = f"d{i}"
        for j in range(cols):
            prev = start if j == 0 else f"w{i}_{j - 1}"
            lines.append(f"Rw{i}_{j} {prev} w{i}_{j} {wire.r_wordline_ohm!r}")
            g = float(g_us[i, j])
            if g > 0:  # an unformed cell (0 µS) is left out
                lines.append(f"Rc{i}_{j} w{i}_{j} b{i}_{j} {1e6 / g!r}")
    for j in range(cols):
        for i in range(1, rows):
            lines.append(f"Rb{i}_{j} b{i - 1}_{j} b{i}_{j} {wire.r_bitline_ohm!r}")
        lines.append(f"Rb{rows}_{j} b{rows - 1}_{j} s{j} {wire.r_bitline_ohm!r}")
        meter = f"s{j}"
        if wire.r_sense_ohm > 0:
            lines.append(f"Rs{j} s{j} m{j} {wire.r_sense_ohm!r}")
            meter = f"m{j}"
        lines.append(f"Vam{j} {meter} 0 DC 0")
    lines += [".control", "set numdgt=15"]
    for b in range(v_in.shape[0]):
        if b > 0:
            lines += [f"alter v{i} dc = {float(v_in[b, i])!r}" for i in range(rows)]
        lines += ["op", f"echo VEC {b}"] + [f"print i(vam{j})" for j in range(cols)]
    lines += ["quit", ".endc", ".end"]
    return "\n".join(lines) + "\n"


_CURRENT = re.compile(r"^\s*i\(vam(\d+)\)\s*=\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$")


def run_ngspice(netlist: str, batch: int, cols: int, workdir: Path) -> torch.Tensor:
    """Column currents [batch, cols] in µA from ngspice's printed ammeter currents."""
    deck = workdir / "tile.cir"
    deck.write_text(netlist)
    proc = subprocess.run(
        ["ngspice", "-b", str(deck)],
        capture_output=True,
        text=True,
        timeout=120 * load_factor(),  # a guard against a hang, as roomy on a loaded machine
        cwd=workdir,
    )
    out = torch.full((batch, cols), float("nan"), dtype=F64)
    vec = -1
    for line in proc.stdout.splitlines():
        if line.startswith("VEC "):
            vec = int(line.split()[1])
        elif (m := _CURRENT.match(line)) and vec >= 0:
            out[vec, int(m.group(1))] = float(m.group(2)) * 1e6  # A -> µA
    assert not torch.isnan(out).any(), (
        f"could not read every column current from ngspice (rc {proc.returncode}):\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    )
    return out


@pytest.mark.parametrize(
    ("size", "wire", "seed"),
    [
        (
            8,
            WireParams(r_wordline_ohm=2.5, r_bitline_ohm=10.0, r_driver_ohm=3.0, r_sense_ohm=7.0),
            1,
        ),
        (8, WireParams(r_wordline_ohm=0.1, r_bitline_ohm=0.1), 2),
        (32, WireParams(r_wordline_ohm=10.0, r_bitline_ohm=4.0), 3),
        (32, WireParams(r_wordline_ohm=1.0, r_bitline_ohm=1.0, r_sense_ohm=2.0), 4),
        (64, WireParams(r_wordline_ohm=5.0, r_bitline_ohm=0.5, r_driver_ohm=1.0), 5),
    ],
)
def test_solve_tile_matches_ngspice(size: int, wire: WireParams, seed: int, tmp_path: Path):
    if shutil.which("ngspice") is None:
        pytest.skip("ngspice not installed: apt-get install -y ngspice")
    g = random_tile(size, size, seed)
    v = random_inputs(3, size, seed + 100)
    ours = solve_tile(g, v, wire)
    spice = run_ngspice(spice_netlist(g, v, wire), v.shape[0], size, tmp_path)
    err = rel_err(ours, spice)
    ideal = v @ g
    print(
        f"{size}x{size} {wire}: max rel err vs ngspice {err:.2e} (IR drop vs ideal "
        f"{rel_err(ideal, spice):.2e})"
    )
    assert err < 1e-4
    assert rel_err(ideal, spice) > 1e-3  # the wires matter: the comparison is not vacuous


# --------------------------------------------------------------------------------------------
# exact model: limits and closed forms


def test_zero_resistance_is_ideal_matmul():
    g = random_tile(24, 17, seed=7)
    v = random_inputs(5, 24, seed=8)
    got = solve_tile(g, v, WireParams(0.0, 0.0))
    assert got.shape == (5, 17) and got.dtype == F64
    assert rel_err(got, v @ g) < 1e-6


@pytest.mark.parametrize(
    "wire",
    [
        WireParams(0.0, 0.0, r_driver_ohm=50.0),
        WireParams(0.0, 0.0, r_sense_ohm=50.0),
        WireParams(0.0, 3.0, r_driver_ohm=50.0),
        WireParams(3.0, 0.0, r_sense_ohm=50.0),
        WireParams(3.0, 0.0),
        WireParams(0.0, 3.0),
    ],
)
def test_merged_ideal_wires_agree_with_fast_model(wire: WireParams):
    """Zero-resistance wires merge nodes; the fast model (no merging) must agree."""
    g = random_tile(12, 9, seed=9)
    v = random_inputs(4, 12, seed=10)
    exact = solve_tile(g, v, wire)
    assert rel_err(fast_tile(g, v, wire, iterations=60, method="cg"), exact) < 1e-9
    assert rel_err(v @ g, exact) > 1e-4


def test_one_cell_closed_form():
    wire = WireParams(r_wordline_ohm=100.0, r_bitline_ohm=200.0, r_driver_ohm=50.0, r_sense_ohm=25)
    g = torch.tensor([[40.0]], dtype=F64)  # 25 kΩ
    v = torch.tensor([[0.3], [-1.0]], dtype=F64)
    total = 50.0 + 100.0 + 25_000.0 + 200.0 + 25.0
    expected = v / total * 1e6
    assert rel_err(solve_tile(g, v, wire), expected) < 1e-12


def test_two_rows_one_column_closed_form():
    rw, rb, rd, rs = 100.0, 200.0, 50.0, 25.0
    wire = WireParams(rw, rb, rd, rs)
    g = torch.tensor([[40.0], [10.0]], dtype=F64)
    v0, v1 = 0.3, 0.7
    r0 = rd + rw + 1e6 / 40.0 + rb  # row 0's branch into the bottom bit-line node
    r1 = rd + rw + 1e6 / 10.0  # row 1's branch into the same node
    rg = rb + rs  # that node down to the sense
    vx = (v0 / r0 + v1 / r1) / (1 / r0 + 1 / r1 + 1 / rg)
    expected = torch.tensor([[vx / rg * 1e6]], dtype=F64)
    got = solve_tile(g, torch.tensor([[v0, v1]], dtype=F64), wire)
    assert rel_err(got, expected) < 1e-12


def test_one_row_two_columns_closed_form():
    rw, rb, rd, rs = 100.0, 200.0, 50.0, 25.0
    wire = WireParams(rw, rb, rd, rs)
    g = torch.tensor([[40.0, 10.0]], dtype=F64)
    ra = rd + rw
    r0 = 1e6 / 40.0 + rb + rs  # from word node 0 through cell 0 to its sense
    r1 = rw + 1e6 / 10.0 + rb + rs  # from word node 0 along the line through cell 1
    par = r0 * r1 / (r0 + r1)
    vw0 = 0.8 * par / (ra + par)
    expected = torch.tensor([[vw0 / r0 * 1e6, vw0 / r1 * 1e6]], dtype=F64)
    got = solve_tile(g, torch.tensor([[0.8]], dtype=F64), wire)
    assert rel_err(got, expected) < 1e-12


def test_unformed_rows_and_columns_and_batches():
    """All-zero rows/columns are fine; many inputs (the transfer-matrix path) match one by one."""
    g = random_tile(6, 5, seed=11)
    g[2] = 0.0
    g[:, 3] = 0.0
    v = random_inputs(9, 6, seed=12)  # batch > rows: solved through the transfer matrix
    wire = WireParams(2.0, 3.0, 1.0, 1.0)
    together = solve_tile(g, v, wire)
    one_by_one = torch.cat([solve_tile(g, v[b : b + 1], wire) for b in range(9)])
    assert rel_err(together, one_by_one) < 1e-10
    assert torch.all(together[:, 3] == 0)
    assert solve_tile(g, v[:0], wire).shape == (0, 5)
    assert solve_tile(g.float(), v.float(), wire).dtype == torch.float32


# --------------------------------------------------------------------------------------------
# fast model


@pytest.mark.parametrize("method", ["jacobi", "cg"])
def test_fast_model_zero_resistance_exact(method: str):
    g = random_tile(20, 13, seed=13)
    v = random_inputs(4, 20, seed=14)
    got = fast_tile(g, v, WireParams(0.0, 0.0), iterations=3, method=method)
    assert rel_err(got, v @ g) < 1e-12


def test_fast_model_converges_to_exact():
    g = random_tile(32, 32, seed=15)
    v = random_inputs(4, 32, seed=16)
    wire = WireParams(2.0, 2.0, 1.0, 1.0)
    exact = solve_tile(g, v, wire)
    jacobi = [rel_err(fast_tile(g, v, wire, iterations=k), exact) for k in (0, 1, 2, 4, 8)]
    assert all(b < a for a, b in zip(jacobi, jacobi[1:], strict=False)), jacobi
    assert jacobi[-1] < 1e-6
    cg = [rel_err(fast_tile(g, v, wire, iterations=k, method="cg"), exact) for k in (1, 3, 10)]
    assert cg[-1] < 1e-9 and cg[1] < jacobi[2], (cg, jacobi)


def test_fast_model_is_differentiable():
    g = random_tile(16, 8, seed=17).requires_grad_(True)
    v = random_inputs(3, 16, seed=18).requires_grad_(True)
    wire = WireParams(5.0, 5.0, 2.0, 2.0)
    for method in ("jacobi", "cg"):
        g.grad = v.grad = None
        fast_tile(g, v, wire, iterations=3, method=method).square().sum().backward()
        assert g.grad is not None and v.grad is not None
        assert torch.isfinite(g.grad).all() and torch.isfinite(v.grad).all()
        assert g.grad.abs().sum() > 0 and v.grad.abs().sum() > 0
    small_g = (random_tile(3, 2, seed=19, zeros=0.0) + 1.0).requires_grad_(True)  # > 0 for FD
    small_v = random_inputs(2, 3, seed=20).requires_grad_(True)
    big = WireParams(500.0, 800.0, 100.0, 100.0)
    for method in ("jacobi", "cg"):
        assert torch.autograd.gradcheck(
            lambda a, b, m=method: fast_tile(a, b, big, iterations=2, method=m), (small_g, small_v)
        )


# --------------------------------------------------------------------------------------------
# input checks


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"r_wordline_ohm": -1.0, "r_bitline_ohm": 1.0}, "r_wordline_ohm"),
        ({"r_wordline_ohm": 1.0, "r_bitline_ohm": float("nan")}, "r_bitline_ohm"),
        ({"r_wordline_ohm": 1.0, "r_bitline_ohm": 1.0, "r_driver_ohm": float("inf")}, "finite"),
        ({"r_wordline_ohm": 1.0, "r_bitline_ohm": 1.0, "r_sense_ohm": "x"}, "not a number"),
    ],
)
def test_wire_params_validation(kwargs: dict, words: str):
    with pytest.raises(PrimeError, match=words):
        WireParams(**kwargs)


G_OK = torch.full((3, 2), 10.0, dtype=F64)
V_OK = torch.ones(4, 3, dtype=F64)
W_OK = WireParams(1.0, 1.0)


@pytest.mark.parametrize(
    ("g", "v", "wire", "words"),
    [
        (G_OK * -1, V_OK, W_OK, "negative"),
        (torch.full((3, 2), float("nan"), dtype=F64), V_OK, W_OK, "NaN or inf conductances"),
        (G_OK, V_OK * float("nan"), W_OK, "NaN or inf voltages"),
        (G_OK, V_OK * float("inf"), W_OK, "NaN or inf voltages"),
        (G_OK, torch.ones(4, 2, dtype=F64), W_OK, "rows"),
        (G_OK, torch.ones(3, dtype=F64), W_OK, "unsqueeze"),
        (G_OK[None], V_OK, W_OK, "2-D"),
        (torch.zeros(0, 2, dtype=F64), torch.ones(4, 0, dtype=F64), W_OK, "empty"),
        (G_OK, V_OK, (1.0, 1.0), "WireParams"),
        (G_OK.numpy(), V_OK, W_OK, "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_prime_error(g, v, wire, words: str):
    with pytest.raises(PrimeError, match=words):
        solve_tile(g, v, wire)
    with pytest.raises(PrimeError, match=words):
        fast_tile(g, v, wire)


@pytest.mark.parametrize(
    "wire",
    [WireParams(2.0, 3.0), WireParams(1.0, 0.5, 4.0, 2.0), WireParams(0.0, 2.0, 0.0, 1.0)],
)
def test_transfer_matrix_is_the_exact_solve_for_every_input(wire: WireParams):
    """The network is linear in the row voltages: one transfer matrix serves every input."""
    g, v = random_tile(24, 16, seed=4), random_inputs(5, 24, seed=5)
    transfer = transfer_matrix(g, wire)
    assert transfer.shape == (24, 16) and bool((transfer >= -1e-12).all())
    assert rel_err(v @ transfer, solve_tile(g, v, wire)) < 1e-10
    assert rel_err(transfer_matrix(g, WireParams(0.0, 0.0)), g) < 1e-12


@pytest.mark.parametrize("wire", [WireParams(2.0, 3.0), WireParams(1.0, 0.5, 4.0, 2.0)])
def test_first_order_transfer_is_one_jacobi_iteration(wire: WireParams):
    g, v = random_tile(20, 12, seed=6), random_inputs(4, 20, seed=7)
    first = first_order_transfer(g, wire)
    assert rel_err(v @ first, fast_tile(g, v, wire, iterations=1)) < 1e-10
    assert bool((first[g == 0] == 0).all())
    small = (random_tile(4, 3, seed=8, zeros=0.0) + 1.0).requires_grad_()  # > 0: gradcheck steps
    assert torch.autograd.gradcheck(lambda t: first_order_transfer(t, wire), (small,))


def test_crossbar_transfer_solves_each_tile_on_its_own():
    g, wire = random_tile(10, 7, seed=9), WireParams(3.0, 2.0)
    got = crossbar_transfer(g, wire, 4, 3)
    assert got.shape == (10, 7)
    for r in range(0, 10, 4):
        for c in range(0, 7, 3):
            block = g[r : r + 4, c : c + 3]
            assert torch.equal(got[r : r + 4, c : c + 3], transfer_matrix(block, wire))
    assert torch.equal(crossbar_transfer(g, wire, None, None), transfer_matrix(g, wire))
    with pytest.raises(PrimeError, match="IR-drop model 'spice' is unknown"):
        crossbar_transfer(g, wire, 4, 3, model="spice")
    for transfer in (transfer_matrix, first_order_transfer):
        with pytest.raises(PrimeError, match="negative"):
            transfer(-g, wire)
        with pytest.raises(PrimeError, match="WireParams"):
            transfer(g, (1.0, 1.0))  # type: ignore[arg-type]


def test_degenerate_wire_and_fast_options_raise_prime_error():
    with pytest.raises(PrimeError, match="too small"):
        solve_tile(G_OK, V_OK, WireParams(1e-320, 1.0))
    with pytest.raises(PrimeError, match="method"):
        fast_tile(G_OK, V_OK, W_OK, method="newton")  # type: ignore[arg-type]
    with pytest.raises(PrimeError, match="iterations"):
        fast_tile(G_OK, V_OK, W_OK, iterations=-1)
