"""llmsim app (minimal for now): run one scenario and show its queue-length trajectory."""

import altair as alt
import streamlit as st

import llmsim

st.set_page_config(page_title="llmsim", layout="wide")
st.title("llmsim — does the engine keep up?")
rate = st.slider("Arrival rate (requests/s)", 0.5, 20.0, 3.0, 0.5)
sched = st.selectbox("Scheduler", list(llmsim.SCHEDULERS), index=3)
sc = llmsim.load_scenario("scenarios/quickstart.toml").with_scheduler(sched).with_rate(rate)
from dataclasses import replace  # noqa: E402

res = llmsim.simulate(replace(sc, num_requests=5000))
st.metric("Verdict", res.verdict.verdict)
st.caption(res.verdict.explanation)
st.altair_chart(alt.Chart(res.timeseries).mark_line().encode(x="time_s", y="backlog_tokens"),
                use_container_width=True)
