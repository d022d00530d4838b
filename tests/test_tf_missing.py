"""Without TensorFlow, ckptmap and its CLI work and ckptmap.tf says what to install.

TensorFlow's absence is simulated in a subprocess (``sys.modules['tensorflow'] =
None`` makes every import of it fail), so this runs where TensorFlow is installed too.
"""

from __future__ import annotations

import json
import subprocess
import sys

BLOCK_TF = "import sys; sys.modules['tensorflow'] = None\n"


def _run(code: str, *, block_tf: bool = True) -> subprocess.CompletedProcess[str]:
    prelude = BLOCK_TF if block_tf else "import sys\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, check=False
    )


def test_import_ckptmap_and_its_cli_never_import_tensorflow() -> None:
    done = _run(
        "import json, ckptmap, ckptmap.cli\n"
        "print(json.dumps({m: m in sys.modules and sys.modules[m] is not None\n"
        "                  for m in ('tensorflow', 'ckptmap.tf')}))\n"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"tensorflow": False, "ckptmap.tf": False}


def test_import_ckptmap_leaves_an_installed_tensorflow_unloaded() -> None:
    done = _run(
        "import ckptmap, ckptmap.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'\n"
        "             or m.startswith('ckptmap.tf')))\n",
        block_tf=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


def test_cli_help_works_without_tensorflow() -> None:
    done = _run("from ckptmap.cli import main\nmain(['--help'], prog_name='ckptmap')\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: ckptmap [OPTIONS] COMMAND [ARGS]...")


def test_import_ckptmap_tf_without_tensorflow_says_what_to_install() -> None:
    done = _run(
        "import json\n"
        "try:\n"
        "    import ckptmap.tf\n"
        "except ImportError as err:\n"
        "    print(json.dumps([type(err).__name__, err.name, str(err),\n"
        "                      err.__cause__ is None, err.__suppress_context__]))\n"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        "ModuleNotFoundError",
        "tensorflow",
        "ckptmap.tf needs TensorFlow: pip install 'ckptmap[tf]' "
        "(from a checkout: pip install '.[tf]')",
        True,
        True,
    ]


def test_the_error_is_one_line_when_uncaught() -> None:
    done = _run("import ckptmap.tf\n")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "ModuleNotFoundError: ckptmap.tf needs TensorFlow: pip install 'ckptmap[tf]' "
        "(from a checkout: pip install '.[tf]')"
    )
    assert "During handling of the above exception" not in done.stderr
