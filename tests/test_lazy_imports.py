"""The light paths import no heavy dependency; the public API is still all there."""
import subprocess
import sys

import pytest

HEAVY = ("scipy", "torch", "plotly", "matplotlib")


def imported_after(code: str) -> set[str]:
    probe = (f"import atexit, sys\n"
             f"atexit.register(lambda: print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr))\n"
             f"{code}")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stderr.split())


@pytest.mark.parametrize("argv", [["--help"], ["plan", "--preset", "chinchilla-2022", "--compute", "1e23", "--json"]])
def test_light_commands_import_no_heavy_module(argv):
    code = ("import sys\nfrom scalinglab.cli import app\n"
            f"sys.argv = ['scalinglab'] + {argv!r}\n"
            "app()")
    assert imported_after(code) == set()


def test_public_api_resolves_lazily():
    import scalinglab
    for name in scalinglab.__all__:
        assert getattr(scalinglab, name) is not None
    assert scalinglab.ChinchillaLaw.__module__ == "scalinglab.laws.parametric"
    assert set(scalinglab.__all__) <= set(dir(scalinglab))
    with pytest.raises(AttributeError):
        scalinglab.no_such_name


def test_help_does_not_even_import_numpy():
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print('numpy' in sys.modules, file=sys.stderr))\n"
             "from scalinglab.cli import app\nsys.argv = ['scalinglab', '--help']\napp()")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr.split()[-1] == "False", out.stderr[-500:]


def test_a_shell_command_line_builds_only_the_command_it_names_and_behaves_the_same():
    """From a shell only the named command is built; its output, help, errors and exit codes are those of the
    whole command line, and the command runs with the user's environment (no parse-time settings left)."""
    import json
    import os

    from typer.testing import CliRunner

    from scalinglab.cli import app

    def shell(*argv):
        return subprocess.run([sys.executable, "-m", "scalinglab.cli", *argv], capture_output=True, text=True,
                              env={k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"})

    argv = ["plan", "--preset", "chinchilla-2022", "--compute", "1e23", "--json"]
    out = shell(*argv)
    assert out.returncode == 0
    assert json.loads(out.stdout) == json.loads(CliRunner().invoke(app, argv).stdout)
    assert "scalinglab.cli plan [OPTIONS]" in shell("plan", "--help").stdout
    group_help = shell("cost", "--help").stdout
    assert "train" in group_help and "serve" in group_help
    bad = shell("plan", "--preset", "nope", "--compute", "1e23")
    assert bad.returncode == 2 and "unknown preset 'nope'" in bad.stderr
    assert shell("plann").returncode == 2
    whole = shell("--help").stdout
    assert "plan" in whole and "ladder" in whole and "models" in whole
    probe = ("import os, sys\nimport scalinglab.cli as c\n"
             "def show(): print('PYDANTIC_DISABLE_PLUGINS' in os.environ)\n"
             "c.app.command('probe-env')(show)\nsys.argv = ['scalinglab', 'probe-env']\nc.app()")
    env_seen = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert env_seen.stdout.strip() == "False"
