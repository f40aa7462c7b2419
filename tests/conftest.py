import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402


@pytest.fixture
def downloads(monkeypatch) -> dict:
    """label -> data of every st.download_button a page draws while the test runs (AppTest
    keeps a button's data on the server, out of the element's reach)."""
    from streamlit.delta_generator import DeltaGenerator
    saved = {}
    real = DeltaGenerator.download_button

    def spy(self, label, data, *a, **k):
        saved[label] = data
        return real(self, label, data, *a, **k)

    monkeypatch.setattr(DeltaGenerator, "download_button", spy)
    return saved
