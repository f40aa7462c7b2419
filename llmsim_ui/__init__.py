"""UI-only helpers of the llmsim dashboard (Streamlit and Altair live here, never in llmsim/).

- ``palette``: the one mapping from schedulers, policies and verdicts to colours;
- ``limits``: the bounds a hosted demo puts on every input, with the messages shown;
- ``state``: page state <-> session state <-> URL query parameters (shareable links);
- ``runs``: numba warm-up, bounded result caches and the chunked live runner;
- ``charts``: the Altair charts;
- ``inputs``: the engine/workload input panel shared by the single-engine and capacity
  pages, scenario TOML upload and download;
- ``network``: DOT text drawing a workflow network;
- ``widgets``: verdict badges with their evidence.
"""
