"""Deprecations fail the suite, both kinds: ``warnings`` (pyproject's filterwarnings) and
the transformers logger (the conftest fixture). Checked by running small test files with
the project's own conftest and pytest settings (pytest's ``pytester``)."""

from __future__ import annotations

from pathlib import Path

import tomllib
from transformers.utils import logging as hf_logging

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


def run(pytester, body: str):
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    pytester.makeini("[pytest]\nfilterwarnings =\n    " + "\n    ".join(ini["filterwarnings"]))
    pytester.makepyfile(test_inner=body)
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")


def test_a_future_warning_fails_a_test(pytester):
    result = run(
        pytester,
        "import warnings\n\ndef test_x():\n    warnings.warn('old name', FutureWarning)\n",
    )
    result.assert_outcomes(failed=1)


def test_a_transformers_logger_deprecation_fails_a_test_even_when_logged_once_before(pytester):
    body = (
        "from transformers.utils import logging\n"
        "log = logging.get_logger('transformers.fake')\n\n"
        "def test_first():\n    log.warning_once('`x` is deprecated. Use `y` instead.')\n\n"
        "def test_second():\n    log.warning_once('`x` is deprecated. Use `y` instead.')\n\n"
        "def test_other_warnings_pass():\n    log.warning('a plain warning')\n"
    )
    result = run(pytester, body)
    result.assert_outcomes(passed=3, errors=2)  # the two fail at teardown
    result.stdout.fnmatch_lines(["*transformers logged a deprecation*"])


def test_the_logger_is_the_one_transformers_uses():
    assert hf_logging.get_logger("transformers.utils.generic").name.startswith("transformers")
