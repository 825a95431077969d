"""A missing reference library skips its checks on a learner's machine and fails them in CI."""
import pytest
from references import import_reference

MISSING = "course_utils_no_such_reference_library"


def test_missing_reference_skips_with_the_install_command(monkeypatch):
    monkeypatch.delenv("COURSE_REQUIRE_REFERENCE", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"pip install -e '\.\[dev\]'"):
        import_reference(MISSING)


def test_missing_reference_fails_when_ci_requires_it(monkeypatch):
    monkeypatch.setenv("COURSE_REQUIRE_REFERENCE", "1")
    with pytest.raises(pytest.fail.Exception, match="COURSE_REQUIRE_REFERENCE=1"):
        import_reference(MISSING)


def test_present_reference_is_imported():
    assert import_reference("json").dumps([1]) == "[1]"
