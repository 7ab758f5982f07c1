"""Transfer Learning Workbench: `streamlit run app.py`. Pages only collect choices and draw what the library reports.

On a classroom server ($WORKBENCH_CLASSROOM names the teacher's classroom.toml) each browser signs in first.
"""

import streamlit as st

from ui_common import PERSON, mode_sidebar, serving, signed_in
from ui_lessons import lesson_pages

st.set_page_config(page_title="Transfer Learning Workbench", page_icon="🧠", layout="wide")

pages = {
    "Train and compare": [
        st.Page("pages/1_data.py", title="1 · Data", icon="🖼️", default=True),
        st.Page("pages/2_model.py", title="2 · Model & strategy", icon="🧩"),
        st.Page("pages/3_train.py", title="3 · Train", icon="🏋️"),
        st.Page("pages/4_compare.py", title="4 · Compare", icon="📊"),
    ],
    "Use and understand a model": [
        st.Page("pages/5_predict.py", title="5 · Predict & export", icon="🔮", url_path="predict"),
        st.Page("pages/6_insight.py", title="6 · Inside the model", icon="🔬", url_path="insight"),
    ],
    "Beyond fine-tuning": [
        st.Page("pages/7_compress.py", title="7 · Compress", icon="🗜️", url_path="compress"),
        st.Page("pages/8_few_shot.py", title="8 · Few-shot", icon="🎯", url_path="few-shot"),
    ],
    "Lessons": lesson_pages(),
}
# The navigation is set up before signing in, so a page opened by its address (/train?run=...) is the one shown
# once the code is accepted; until then a classroom server shows nothing but the sign-in form.
page = st.navigation(pages, position="sidebar" if serving().classroom is False or PERSON in st.session_state
                     else "hidden")
if signed_in() is None:
    st.stop()
mode_sidebar()
page.run()
