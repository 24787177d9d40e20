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
