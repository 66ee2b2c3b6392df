import pytest

from perennial import __version__
from perennial.cli import main


def test_version_prints_perennial_and_library_versions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"perennial {__version__}"
    assert "kopf " in out
    assert "aiohttp " in out


def test_run_refuses_invalid_settings_before_touching_a_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERENNIAL_LOG_FORMAT", "xml")
    assert main(["run"]) == 2
    assert "PERENNIAL_LOG_FORMAT" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
