"""Transfer Learning Workbench: `streamlit run app.py`. Pages only collect choices and draw what the library reports."""

import streamlit as st

st.set_page_config(page_title="Transfer Learning Workbench", page_icon="🧠", layout="wide")

pages = [
    st.Page("pages/1_data.py", title="1 · Data", icon="🖼️", default=True),
    st.Page("pages/2_model.py", title="2 · Model & strategy", icon="🧩"),
    st.Page("pages/3_train.py", title="3 · Train", icon="🏋️"),
    st.Page("pages/4_compare.py", title="4 · Compare", icon="📊"),
    st.Page("pages/5_predict.py", title="5 · Predict & export", icon="🔮", url_path="predict"),
]
st.navigation(pages).run()
