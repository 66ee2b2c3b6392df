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


def test_perennial_run_loads_only_the_parts_of_the_kubernetes_package_it_uses() -> None:
    """The synchronous client, dynamic client and streams stay out of the operator's memory."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from perennial.cli import _skip_the_eager_kubernetes_package\n"
        "_skip_the_eager_kubernetes_package()\n"
        "import kopf, perennial.main\n"
        "from kubernetes.aio.config import kube_config\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('kubernetes.'))\n"
        "assert not [m for m in loaded if m.startswith(('kubernetes.dynamic', 'kubernetes.stream',"
        " 'kubernetes.client.api.', 'kubernetes.watch'))], loaded\n"
        "assert 'kubernetes.aio.client.rest' in loaded\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
