"""UI blocks the pages share: the engine-input block (scenario upload, schedulers, the
engine and workload panel with its load ρ) and the run controls (Stop / Resume / Replay
live around a ``runs.LiveRun``)."""

from __future__ import annotations

import time

import streamlit as st

from llmsim import SCHEDULERS, ConfigError
from llmsim_ui import inputs, runs
from llmsim_ui.markdown import plain
from llmsim_ui.state import PageState

SCHEDULER_HELP = "\n".join(f"- **{k}**: {v.summary}" for k, v in SCHEDULERS.items())
# said under the scheduler choice: the four names were the page's first words and explained
# only on The model, the last page (tried as a new user would)
SCHEDULER_LINE = ("**fastertransformer**: static batches · **vllm**: whole prompts first, never mixed · "
                  "**orca**: prefill chunks first, decodes fill the rest · **sarathi**: decodes first, prefill "
                  "chunks fill the rest. More on *The model* page.")


def _restore_upload(ps: PageState, keep_n: bool, all_schedulers: bool) -> None:
    """Fill the inputs from an uploaded scenario TOML (a callback: runs before the page)."""
    f = st.session_state.get(ps.key("toml_file"))
    if f is None:
        return
    try:
        sc, text = inputs.read_upload(f)  # its refusals start with the file's name
    except ConfigError as exc:
        st.session_state[ps.key("upload_msgs")] = ("error", [str(exc)])
        return
    try:
        values = inputs.values_from_scenario(sc)
    except ConfigError as exc:  # and so do the panel's (found as a hostile visitor would)
        st.session_state[ps.key("upload_msgs")] = ("error", [f"{f.name}: {exc}"])
        return
    values["sched"] = inputs.schedulers_in(text) or (list(SCHEDULERS) if all_schedulers else values["sched"])
    if ps.by_name["sched"].kind == "str":  # one scheduler on this page
        values["sched"] = values["sched"][0]
    if not keep_n:
        values.pop("n", None)  # a file's run length is not, e.g., a probe size
    errs = inputs.apply_values(ps, values)  # all or nothing
    if not errs:
        st.session_state.pop(ps.key("_target_rho"), None)  # the file's rate wins
        # the file's name and description go with what the page downloads (inputs.scenario_table)
        st.session_state[ps.key(inputs.RESTORED_META)] = {"name": sc.name or inputs.name_from_file(f.name),
                                                          "description": sc.description}
    st.session_state[ps.key("upload_msgs")] = ("error", errs) if errs else ("ok", [f"Restored {f.name}."])


def engine_inputs(ps: PageState, with_rate: bool = True, sched_label: str = "Schedulers to compare",
                  upload_help: str = "A file saved with 'Download scenario (TOML)', or any single-engine "
                                     "scenario file.", keep_n: bool = True, multi: bool = True):
    """The sidebar's scenario upload, scheduler choice and engine/workload panel; returns
    the uploaded trace (or None). ps needs the fields of ``inputs.fields`` and "sched"."""
    inputs.setup_button(ps, st.sidebar)
    with st.sidebar:
        st.file_uploader("Restore a scenario (TOML)", type=["toml"], key=ps.key("toml_file"),
                         on_change=_restore_upload, args=(ps, keep_n, not with_rate), help=upload_help)
        kind, msgs = st.session_state.pop(ps.key("upload_msgs"), ("", []))
        for m in msgs:
            (st.success if kind == "ok" else st.error)(plain(m))
        if multi:
            st.multiselect(sched_label, list(SCHEDULERS), **ps.w("sched"), help=SCHEDULER_HELP)
        else:
            st.selectbox(sched_label, list(SCHEDULERS), **ps.w("sched", list(SCHEDULERS)), help=SCHEDULER_HELP)
        st.caption(SCHEDULER_LINE)
    inputs.link_presets(ps)
    if with_rate:
        inputs.sync_load(ps)
    return inputs.panel(ps, with_rate=with_rate)


def show_errors(errors: list[str]) -> None:
    """Every message, then stop the page (nothing below runs on bad input)."""
    if errors:
        for e in errors:
            st.error(plain(e), icon=":material/block:")
        st.stop()


def start_run(page: str, key, jobs, status_slot) -> runs.LiveRun:
    """The page's run for these jobs: the session's own if it is for the same inputs,
    else a new one. With the kernel on disk, waits for it to load (a spinner in
    ``status_slot`` after half a second); on a cold start the run starts at once in the
    Python tier while Numba compiles (``runs.LiveRun.step``)."""
    run = runs.session_run(page)
    replay = st.session_state.pop(f"{page}.replay", False)
    if run is not None and run.key == key and not replay:
        return run
    with status_slot.container():
        runs.warm_up(wait=not runs.compiling())
    status_slot.empty()
    run = runs.LiveRun.start(key, jobs, use_cache=not replay)
    runs.set_session_run(page, run)
    return run


def wants_new_run(page: str, key) -> bool:
    """Whether the page will start a run (new inputs or Replay pressed), without popping
    the replay flag."""
    run = runs.session_run(page)
    return run is None or run.key != key or bool(st.session_state.get(f"{page}.replay"))


class RunButton:
    """A page's run button (Stop, Resume, Replay live) in one or more slots (the second one's
    key ends in "_near"), keeping its key from one script run to the next
    (``{page}.run_btn{n}``): a script run starting with a button of another key than the last
    run ended with kept that one, faded, under the new one until the run ended (Streamlit
    keeps a replaced element of another key as stale): a Replay live under the Stop of the
    replay it started, 56 px that pushed the charts down while they played (a hostile pass). A
    second button in one script run (Stop, then Replay live once the run ends) takes the next
    key, and the next script run starts with that one.

    A button's identity is its key: the second click of a double-click, sent before the
    browser had the new button, pressed the new one (Replay live, then Stop: the replay
    stopped at 0%; a hostile pass). A click within TOO_SOON_S of the last one taken is that
    second click and is ignored, as it was when it pressed the old button again. (The server
    cannot tell when the browser drew the new button: a first version that ignored clicks
    within 0.2 s of the button's drawing let the double-click through, its run interrupted
    later than that.)"""

    TOO_SOON_S = 0.6  # a double-click's two clicks: within 0.5 s (the usual system setting)

    def __init__(self, page: str, slots: list):
        self.page, self.slots, self.drawn = page, slots, 0

    def __call__(self, label: str, icon: str, callback, args: tuple = (), help: str | None = None) -> None:
        gen_key, label_key = f"{self.page}.run_btn_gen", f"{self.page}.run_btn_label"
        # a Resume where the last button was a Stop takes a new key too: a second click on the
        # Stop the browser still showed, sent more than TOO_SOON_S after the first while the
        # server redrew the page, pressed Resume (the run went on to its end; the browser test
        # under load). That click now finds no button. (The stale Stop this leaves is dropped
        # when the script run ends, at once: a stopped run's page does not play.)
        renew = self.drawn or (label == "Resume" and st.session_state.get(label_key) == "Stop")
        gen = st.session_state.get(gen_key, 0) + (1 if renew else 0)
        st.session_state[gen_key] = gen
        st.session_state[label_key] = label
        self.drawn += 1
        for i, slot in enumerate(self.slots):
            slot.button(label, icon=icon, key=f"{self.page}.run_btn{gen}{'_near' if i else ''}",
                        on_click=self.clicked, args=(self.page, callback, args), help=help)

    @classmethod
    def clicked(cls, page: str, callback, args: tuple) -> None:
        now, key = time.monotonic(), f"{page}.run_btn_taken"
        last = st.session_state.get(key)
        if last is None or now - last >= cls.TOO_SOON_S:
            st.session_state[key] = now
            callback(*args)


def run_slot(where, key: str = "run-slot"):
    """A place of a page's run button: an empty slot in a container of that key, in `where`
    (a column, or ``st``). "run-slot", the button's own place, keeps a button's height while
    the button is redrawn (the slot, emptied at the top of a script run, took the page 40 px up
    and back down for up to 0.2 s; a hostile pass). "phone-replay", above the trajectories, is
    shown below phone_nav.PHONE_PX only: there the verdict cards stand one under another, and
    the button above them was three screens from the charts it animates (tried as a new user
    would). Both by phone_nav's CSS."""
    with where.container(key=key):
        return st.empty()


def nothing_ran(progress_slot, refused: str) -> None:
    """In the run's place when every job is refused (`refused`: "every scheduler chosen is"), then
    the page ends: no run button, no chart heading over nothing (a new-user pass)."""
    progress_slot.info(f"Nothing ran: {refused} refused for this workload. Each card says why and what is "
                       "allowed.", icon=":material/block:")
    st.stop()


def play_controls(page: str, run: runs.LiveRun, button_slot, progress_slot, draw, live: bool,
                  on_end=None, near_slot=None) -> None:
    """Stop while a run plays, Resume once stopped, Replay live once done; plays the run
    (drawing each chunk with draw(run) if live) and calls on_end(run) after playing.
    near_slot: a second place for the same button, beside the charts it animates (a phone's
    page has the verdict cards one under another between the first one and the charts)."""
    button = RunButton(page, [button_slot] + ([near_slot] if near_slot is not None else []))
    if not run.done and not run.stopped:
        button("Stop", ":material/stop_circle:", runs.stop_cb, args=(page,))
        if live:
            runs.play(run, draw, progress_slot)
        else:
            runs.play(run, lambda r: None, progress_slot, label="Simulating (live view off)", pace=False)
            run.frames = 0
        if on_end is not None:
            on_end(run)
    if run.stopped and not run.done:
        button("Resume", ":material/play_circle:", runs.resume_cb, args=(page,))
        if run.pending and not run.evicted:
            progress_slot.info("Stopped while waiting for the server's memory. Resume asks for it again.",
                               icon=":material/pause_circle:")
        elif run.evicted:
            progress_slot.info("Stopped, and set aside: another visitor needed the server's memory while it was "
                               "stopped. Resume starts it again from the beginning.", icon=":material/pause_circle:")
        elif run.progress >= 1.0:  # simulated to the end; stopped while the verdicts were computed
            progress_slot.info("Stopped at the end of the run, before its verdicts were computed: press Resume "
                               "to compute them.", icon=":material/pause_circle:")
        else:
            progress_slot.info(f"Stopped at {runs.percent(run.progress)} of the run. Verdicts need the whole run: "
                               "press Resume.", icon=":material/pause_circle:")
    else:
        button("Replay live", ":material/replay:", runs.replay_cb, args=(page,),
               help="Run the simulation again from the start and watch it play.")
