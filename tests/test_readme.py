"""The README's commands are the ones CI runs."""

import re

from .conftest import REPO


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    install_and_run, test_command = (b.strip() for b in _bash_blocks(quick_start))
    assert "streamlit run app.py" in install_and_run
    ci = (REPO / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()
