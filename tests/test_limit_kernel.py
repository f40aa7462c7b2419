"""bench/limit_kernel.py's W1 kernel: a second, separately written simulation of one engine
(sarathi or orca, chunked prefill, one call per request), which must agree bit for bit with
llmsim's general kernel on W1's draws -- every time written per request, the iteration count,
the time integrals and the trajectory samples. It is the bound the kernel's speed is measured
against (bench/README.md, Round 17), and a cross-check of the general kernel's single-engine
path that imports none of its code: the same algorithms (event order, phases, the decode
queue's passes), transcribed for one engine with its state in local variables."""

import numpy as np
import pytest

from bench import limit_kernel as L
import llmsim


@pytest.mark.parametrize("single", [False, True])
@pytest.mark.parametrize("case", sorted(L.CASES))
def test_w1_kernel_agrees_with_llmsim_bit_for_bit(case, single):
    """Against llmsim's general kernel and its single-engine kernel (llmsim/_single.py)."""
    sim = llmsim.Simulation(L.w1_scenario(case, 3000))
    sim.single_kernel = None if single else False
    w = L.W1Run(sim)
    sim.advance()
    assert sim.single_kernel == single
    w.run()
    assert L.differences(sim, w) == []
    assert w.res[L.R_ITERS] > 4000  # the run is not trivially short: ~1.67 iterations per request


def test_w1_kernel_comparison_sees_a_one_ulp_change():
    """The comparison can fail: with a batch time one ulp longer, admissions, first tokens and
    finishes move (most later sums round back to the same floats)."""
    sim = llmsim.Simulation(L.w1_scenario("sarathi", 3000))
    sim.single_kernel = False
    w = L.W1Run(sim)
    sim.advance()
    w.bt = float(np.nextafter(w.bt, 1.0))
    w.run()
    diff = L.differences(sim, w)
    assert any(d.startswith("call column") for d in diff) and "workflow finish times differ" in diff, diff
