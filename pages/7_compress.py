"""Compress: prune and int8-quantise a finished run's model, then weigh accuracy against size and latency. The work
is `workbench.deploy.compress.compress_run`, run in a background job this page polls."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui_common import get_registry, person, pick_run
from workbench.analysis import charts
from workbench.deploy.compress import (
    COMPRESSED_DIR,
    QUANTIZATIONS,
    TECHNIQUES,
    CompressConfig,
    compress_run,
    read_report,
    variant_zip,
)
from workbench.runs.jobs import Job
from workbench.runs.records import RunRecord

PICKED = "compress_run"  # session key: the run id chosen on this page
JOB = "compress_job"  # session key: the id of this session's compression job
SPARSITIES = [0.3, 0.5, 0.7, 0.9]
REFRESH_SECONDS = 2.0


@st.cache_resource
def job_board() -> dict[str, Job]:
    """Compression jobs of this server, by id: a refresh or a second tab finds a running job again."""
    return {}


def compressible_runs() -> list[RunRecord]:
    """Runs that ended with a saved model and a dataset to measure on, newest first."""
    return [r for r in get_registry().records(person()) if r.has_model and r.data]


def run_ui(records: list[RunRecord]) -> RunRecord | None:
    if not records:
        st.info("No finished run to compress yet. Train one on the **Train** page first (a partial fine-tune of "
                "the sample data takes a few minutes).")
        return None
    return pick_run(records, "Run to compress", PICKED, describe=with_accuracy)


def with_accuracy(record: RunRecord, label: str) -> str:
    accuracy = record.summary.val_accuracy if record.summary else None
    return label + (f" · {accuracy:.0%}" if accuracy is not None else "")


def explanations_ui() -> None:
    with st.expander("What each technique does"):
        for technique in TECHNIQUES.values():
            st.markdown(f"**{technique.title}.** {technique.explanation}")


def settings_ui(record: RunRecord) -> CompressConfig | None:
    """The choices as a CompressConfig when the form is submitted, else None."""
    with st.form("compress_settings"):
        left, right = st.columns(2)
        sparsities = left.multiselect("Pruning sparsities", SPARSITIES, default=[0.5, 0.9], key="sparsities",
                                      format_func=lambda s: f"{s:.0%} of the weights zeroed")
        structured = left.checkbox("Also prune whole channels (structured)", key="structured")
        finetune = left.number_input("Fine-tune epochs after pruning", 0, 20, 0, key="finetune_epochs",
                                     help="Pruned weights stay zero; the others adjust. 0: no fine-tuning.")
        quantize = right.multiselect("int8 quantisation", list(QUANTIZATIONS), default=list(QUANTIZATIONS),
                                     key="quantize", format_func=lambda q: TECHNIQUES[q].title)
        calibration = right.number_input("Calibration images (static int8)", 1, 1024, 64, key="calibration")
        submitted = st.form_submit_button("Compress", type="primary")
    if not submitted:
        return None
    try:
        return CompressConfig(run=str(record.dir), sparsities=tuple(sorted(sparsities)), structured=structured,
                              finetune_epochs=int(finetune), quantize=tuple(quantize),
                              calibration_images=int(calibration))
    except ValueError as error:
        st.error(str(error))
        return None


def start(config: CompressConfig) -> None:
    job = Job("compress", lambda reporter: compress_run(config, reporter)).start()
    job_board()[job.id] = job
    st.session_state[JOB] = job.id


def job_panel(job_id: str) -> None:
    """Progress of the running job; once it ends, the whole page is drawn again with its report."""
    job = job_board().get(job_id)
    if job is None:
        return
    if job.done:
        if job.status == "failed":
            st.error(f"Compression failed: {job.error}")
        elif job.status == "stopped":
            st.warning("Compression stopped before the end: the trade-off below is the previous one, if any.")
        if st.session_state.pop("compress_waiting", False):
            st.rerun()
        return
    st.session_state["compress_waiting"] = True
    st.progress(job.fraction or 0.0, text=f"Compressing: {job.message}…")
    st.button("Stop", key="stop_compress", on_click=job.stop)


def tradeoff_ui(record: RunRecord) -> None:
    report = read_report(record.dir)
    if report is None:
        st.caption("No compressed variants of this run yet: choose settings above and press **Compress**.")
        return
    st.subheader("Trade-off")
    st.caption(f"Measured {report['created']} on the run's {report['val_images']} validation images, each variant "
               f"loaded back from its saved file. Latency: {report['latency']}.")
    table = charts.tradeoff_table(report)
    st.dataframe(table.style.format({"val accuracy": "{:.1%}", "sparsity": "{:.1%}", "size MB": "{:.2f}",
                                     "zipped MB": "{:.2f}", "latency ms": "{:.1f}", "CPU ms": "{:.1f}",
                                     "changed predictions": "{:.0f}"},
                                    na_rep="–"), hide_index=True, key="tradeoff_table")
    st.plotly_chart(charts.tradeoff_figure(report), key="tradeoff_figure")
    ok = [v for v in report["variants"] if v["status"] == "ok" and v["name"] != "original"]
    if not ok:
        return
    by_name = {v["name"]: v for v in ok}
    name = st.selectbox("Variant", list(by_name), key="variant")
    chosen = by_name[name]
    left, right = st.columns([3, 2])
    left.plotly_chart(charts.confusion_difference_figure(
        chosen["confusion_difference"], report["class_names"], f"{name} minus original (validation images)"),
        key="confusion_difference")
    with right:
        st.markdown(f"**{name}**: {chosen['note']}")
        st.metric("Validation accuracy", f"{chosen['val_accuracy']:.1%}",
                  delta=f"{chosen['val_accuracy'] - report['variants'][0]['val_accuracy']:+.1%} vs original")
        variant_dir = Path(record.dir) / COMPRESSED_DIR / name
        st.download_button(f"Download {name} (.zip)", data=variant_zip(variant_dir),
                           file_name=f"{record.id}-{name}.zip", mime="application/zip", key="download_variant")


# -------------------------------------------------------------------------------------------------------------------

st.title("7 · Compress")
st.caption("Make a trained model smaller: zero its least important weights (pruning) or store it in 8-bit integers "
           "(quantisation), then see what that costs in accuracy and buys in size and speed, measured.")
chosen_run = run_ui(compressible_runs())
if chosen_run is not None:
    explanations_ui()
    new_config = settings_ui(chosen_run)
    if new_config is not None:
        start(new_config)
    current = st.session_state.get(JOB)
    running = current in job_board() and not job_board()[current].done
    if current:
        st.fragment(job_panel, run_every=REFRESH_SECONDS if running else None)(current)
    tradeoff_ui(chosen_run)
