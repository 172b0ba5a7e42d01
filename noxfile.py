"""Developer sessions: ``nox -s tests``, ``fuzz``, ``lint``, ``typecheck``, ``bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = ["3.11", "3.12", "3.13"]


@nox.session(python=PYTHON[0])
def tests(session: nox.Session) -> None:
    """The test suite, as the README's test command runs it."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON[0])
def fuzz(session: nox.Session) -> None:
    """Property tests with a large Hypothesis budget (the ``fuzz`` profile).

    ``nox -s fuzz -- -k codec`` narrows it; ``HYPOTHESIS_PROFILE=ci nox -s fuzz`` shortens it.
    """
    session.install("-e", ".[test]")
    profile = session.env.get("HYPOTHESIS_PROFILE", "fuzz")
    session.run(
        "pytest", "-m", "not slow", "-q", "-p", "no:cacheprovider",
        "tests/codec", *session.posargs,
        env={"HYPOTHESIS_PROFILE": profile},
    )


@nox.session(python=PYTHON[0])
def lint(session: nox.Session) -> None:
    """ruff: style and common bugs."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "smpp_codec", "smsgw", "tests", "examples", "noxfile.py")


@nox.session(python=PYTHON[0])
def typecheck(session: nox.Session) -> None:
    """mypy --strict on smpp_codec and smsgw (settings in pyproject.toml)."""
    session.install("-e", ".[test]", "mypy>=1.10")
    session.run("mypy")


@nox.session(python=PYTHON[0])
def bench(session: nox.Session) -> None:
    """Benchmarks: prints medians (and ratios to peers measured in the same run)."""
    session.install("-e", ".[test]")
    session.run("smsgw", "bench", *(session.posargs or ["--all"]))
