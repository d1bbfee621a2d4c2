"""The example's synthetic credit-risk data: `make_credit_data(n, seed)`, numpy only.

Used by examples/train_credit_risk.py (which trains the example model on it) and by the drift
benchmark (which draws live traffic from it), which must not need scikit-learn to run.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FEATURES: tuple[str, ...] = (
    "age",
    "income",
    "months_employed",
    "debt_to_income",
    "credit_utilization",
    "num_open_accounts",
    "num_credit_inquiries_6m",
    "num_late_payments_12m",
    "num_derogatory_marks",
    "credit_score",
    "credit_history_years",
    "total_credit_limit",
    "revolving_balance",
    "savings_balance",
    "monthly_housing_payment",
    "num_dependents",
    "loan_amount",
    "loan_term_months",
    "interest_rate",
    "loan_to_income",
)
N_FEATURES = len(FEATURES)
# Share of NaN per feature: thin bureau files, unreported savings, gaps in employment records.
MISSING_RATES: dict[str, float] = {
    "months_employed": 0.03,
    "savings_balance": 0.05,
    "credit_score": 0.02,
}
DEFAULT_RATE = 0.12

FloatArray = npt.NDArray[np.float64]


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def make_credit_data(n: int, seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Return ``(X, y)``: ``n`` applicants as FP32 rows in `FEATURES` order, and default labels.

    A latent financial-stress factor ties utilization, late payments, score and savings together,
    as in real bureau data; the label is a logistic function of a few observed features plus
    noise, with the intercept solved so that about `DEFAULT_RATE` of applicants default.
    Values are rounded to the precision a lender would record, then cast to FP32 (what the model
    receives on the wire), so the profile and the training data match the served inputs exactly.
    """
    rng = np.random.default_rng(seed)
    stress = rng.normal(0.0, 1.0, n)

    age = np.clip(rng.normal(42.0, 12.0, n), 21, 80).round()
    income = rng.lognormal(np.log(52_000.0) + 0.012 * (age - 42.0) - 0.15 * stress, 0.55).round(2)
    months_employed = np.minimum(rng.gamma(2.0, 32.0, n), (age - 18.0) * 12.0).round()
    credit_history_years = ((age - 18.0) * rng.beta(4.0, 2.0, n)).round(1)
    credit_utilization = _sigmoid(-0.6 + 0.9 * stress + rng.normal(0.0, 0.7, n)).round(4)
    num_late_payments = rng.poisson(np.exp(-1.7 + 0.9 * stress)).astype(np.float64)
    num_derogatory = rng.poisson(np.exp(-2.6 + 0.8 * stress)).astype(np.float64)
    num_inquiries = rng.poisson(np.exp(0.1 + 0.4 * stress)).astype(np.float64)
    num_open_accounts = rng.poisson(2.0 + 0.35 * credit_history_years).astype(np.float64)
    credit_score = np.clip(
        700.0
        - 45.0 * stress
        + 2.5 * np.sqrt(credit_history_years)
        - 25.0 * num_late_payments
        + rng.normal(0.0, 30.0, n),
        300,
        850,
    ).round()
    debt_to_income = np.clip(rng.beta(2.2, 5.0, n) + 0.06 * stress, 0.0, 0.95).round(4)
    total_credit_limit = rng.lognormal(np.log(income * 0.35), 0.5).round(-2)
    revolving_balance = (credit_utilization * total_credit_limit).round(2)
    savings_balance = rng.lognormal(np.log(income * 0.15) - 0.5 * stress, 1.0).round(2)
    monthly_housing_payment = (income / 12.0 * np.clip(rng.normal(0.28, 0.07, n), 0.05, 0.6)).round(
        2
    )
    num_dependents = np.minimum(rng.poisson(0.9, n), 6).astype(np.float64)
    loan_amount = np.clip(
        rng.lognormal(np.log(12_000.0) + 0.3 * np.log(income / 52_000.0), 0.6), 1_000, 100_000
    ).round(-2)
    loan_term_months = rng.choice([12.0, 24.0, 36.0, 48.0, 60.0], n, p=[0.1, 0.2, 0.35, 0.15, 0.2])
    interest_rate = np.clip(
        0.04
        + 0.22 * (850.0 - credit_score) / 550.0
        + 0.0004 * loan_term_months
        + rng.normal(0.0, 0.01, n),
        0.03,
        0.36,
    ).round(4)
    loan_to_income = (loan_amount / income).round(4)

    logit = (
        3.0 * (debt_to_income - 0.3)
        + 1.8 * (credit_utilization - 0.4)
        + 0.45 * num_late_payments
        + 0.35 * num_derogatory
        - 0.012 * (credit_score - 690.0)
        + 1.5 * (loan_to_income - 0.25)
        - 0.3 * np.log(income / 52_000.0)
        - 0.004 * (months_employed - 60.0)
        + 0.12 * num_inquiries
        + rng.normal(0.0, 0.5, n)
    )
    intercept = _solve_intercept(logit, DEFAULT_RATE)
    y = (rng.random(n) < _sigmoid(logit + intercept)).astype(np.int64)

    columns = {
        "age": age,
        "income": income,
        "months_employed": months_employed,
        "debt_to_income": debt_to_income,
        "credit_utilization": credit_utilization,
        "num_open_accounts": num_open_accounts,
        "num_credit_inquiries_6m": num_inquiries,
        "num_late_payments_12m": num_late_payments,
        "num_derogatory_marks": num_derogatory,
        "credit_score": credit_score,
        "credit_history_years": credit_history_years,
        "total_credit_limit": total_credit_limit,
        "revolving_balance": revolving_balance,
        "savings_balance": savings_balance,
        "monthly_housing_payment": monthly_housing_payment,
        "num_dependents": num_dependents,
        "loan_amount": loan_amount,
        "loan_term_months": loan_term_months,
        "interest_rate": interest_rate,
        "loan_to_income": loan_to_income,
    }
    # Missingness is drawn after the label so that it is uninformative (missing completely at
    # random); the model still has to cope with it.
    for name, rate in MISSING_RATES.items():
        columns[name] = np.where(rng.random(n) < rate, np.nan, columns[name])
    X = np.column_stack([columns[name] for name in FEATURES]).astype(np.float32)
    return X, y


def _solve_intercept(logit: FloatArray, rate: float) -> float:
    """Bisect for the intercept whose mean default probability is ``rate``."""
    lo, hi = -20.0, 20.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _sigmoid(logit + mid).mean() < rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
