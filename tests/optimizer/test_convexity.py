"""Joint convexity of the transmit energy (spec 5.2), checked numerically.

E_tx = (N0/g) phi(tau b), phi(u) = u (2^{S/u} - 1). In the coordinates scaled by (tau, b) the
Hessian of (tau, b) -> phi(tau b) has eigenvalues -u phi'(u) and u (2 u phi''(u) + phi'(u));
with z = S ln2 / u these are >= 0 iff 1 - e^z (1 - z) >= 0 and e^z (2 z^2 - z + 1) - 1 >= 0.
"""

from __future__ import annotations

import numpy as np

from privtuner.optimizer.methods.exact.continuous import log_eta, log_omega, phi


def test_eigenvalue_conditions_on_grid() -> None:
    z = np.concatenate([np.logspace(-6, np.log10(700.0), 4000)])
    with np.errstate(over="ignore"):
        c1 = 1.0 - np.exp(z) * (1.0 - z)
        c2 = np.exp(z) * (2 * z**2 - z + 1) - 1.0
    assert np.all(c1 >= 0)
    assert np.all(c2 >= 0)
    # small z: both vanish like z^2/2 and 2 z (strictly positive)
    small = z < 1e-3
    assert np.all(c1[small] > 0) and np.all(c2[small] > 0)


def test_numeric_hessian_psd_on_grid() -> None:
    """Finite-difference Hessian of phi(tau b) in (log tau, log b) scaled back: PSD."""
    s_bits = 1.0e6
    worst = np.inf
    for tau in np.logspace(-2, 2, 9):
        for b in np.logspace(4, 7.5, 9):
            u = tau * b
            if s_bits / u > 900:  # 2^{S/u} overflows: far outside any feasible point
                continue
            h = 1e-4
            f = lambda t, bb: float(phi(np.array([t * bb]), np.array([s_bits]))[0])  # noqa: E731
            ftt = (f(tau * (1 + h), b) - 2 * f(tau, b) + f(tau * (1 - h), b)) / (tau * h) ** 2
            fbb = (f(tau, b * (1 + h)) - 2 * f(tau, b) + f(tau, b * (1 - h))) / (b * h) ** 2
            ftb = (
                f(tau * (1 + h), b * (1 + h))
                - f(tau * (1 + h), b * (1 - h))
                - f(tau * (1 - h), b * (1 + h))
                + f(tau * (1 - h), b * (1 - h))
            ) / (4 * tau * b * h * h)
            hess = np.array([[ftt * tau**2, ftb * tau * b], [ftb * tau * b, fbb * b**2]])
            eig = np.linalg.eigvalsh(hess)
            scale = max(abs(eig).max(), 1e-300)
            worst = min(worst, eig.min() / scale)
    assert worst > -1e-4


def test_special_functions_match_direct_formulas() -> None:
    z = np.logspace(-5, 2, 200)
    omega_direct = z - 1 + np.exp(-z)
    big = z > 1e-2
    assert np.allclose(np.exp(log_omega(z))[big], omega_direct[big], rtol=1e-10)
    small = z < 1e-3
    series = z**2 / 2 - z**3 / 6 + z**4 / 24
    assert np.allclose(np.exp(log_omega(z))[small], series[small], rtol=1e-9)
    x = np.logspace(-5, 3, 200)
    eta = np.log1p(x) - x / (1 + x)
    ok = x > 1e-2
    assert np.allclose(np.exp(log_eta(x))[ok], eta[ok], rtol=1e-10)
    xs = x[x < 1e-3]
    assert np.allclose(np.exp(log_eta(xs)), xs**2 / 2 - 2 * xs**3 / 3, rtol=1e-5)
