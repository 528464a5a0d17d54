"""The MLflow server app that ``mpimpy ui`` runs: MLflow's own, opening on the runs.

MLflow 3's UI opens an experiment on its GenAI view (traces, token usage) unless the browser
was switched to "Model training" once. Some MLflow 3 versions choose the view from the
experiment-kind tag that :func:`mpimpy.tracking.ensure_experiment` sets; others (3.17 among
them) read only the browser's own setting, kept in its local storage. So this app, MLflow's
server app plus one hook, adds a small script to the UI's page that fills in, where the
browser has not chosen yet:

* the "Model training" view (runs tables, not traces);
* the assistant side panel closed (it takes a third of the page);
* for every experiment with the :data:`mpimpy.tracking.COLUMNS_TAG` tag whose runs table this
  browser has not been set up for: that tag's columns (RE, SNR_dB, the study's swept
  parameters), so they show without adding columns by hand.

Whatever the user changes afterwards is kept: the script only writes keys that are missing.
Registered as the MLflow app ``mpimpy`` (``mlflow server --app-name mpimpy``, entry point
group ``mlflow.app`` in ``pyproject.toml``).
"""

from __future__ import annotations

import json

#: Local-storage keys of MLflow's UI (3.x) and the values filled in where they are missing.
WORKFLOW_KEY = "mlflow.workflowType_v1"
UI_DEFAULTS = {
    WORKFLOW_KEY: "machine_learning",
    "mlflow.assistant.panelOpen_v1": False,
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
}
#: Local-storage key of one experiment's runs-table state (``{id}``: the experiment id).
RUNS_TABLE_KEY = 'MLflowLocalStorage-1.1-ExperimentPage-["{id}"]-ReactComponentState'
#: Of the columns MLflow's runs table shows by default (source, models, dataset), the one our
#: runs fill in: the notebook; ours come after it.
DEFAULT_COLUMNS = ["attributes.`Source`"]


def column_key(column: str) -> str:
    """MLflow UI's name of a runs-table column: ``"metrics.RE"`` -> ``"metrics.`RE`"``."""
    kind, name = column.split(".", 1)
    return f"{kind}.`{name}`"


def runs_table_states(experiments) -> dict[str, str]:
    """Local-storage entries (key: JSON value) that set up the runs table of each experiment
    carrying :data:`mpimpy.tracking.COLUMNS_TAG`."""
    from mpimpy.tracking import COLUMNS_TAG

    states = {}
    for experiment in experiments:
        raw = experiment.tags.get(COLUMNS_TAG)
        if not raw:
            continue
        try:
            columns = [column_key(c) for c in json.loads(raw)]
        except (ValueError, TypeError):
            continue  # a hand-edited tag that is not a JSON list of "kind.name"
        state = {"selectedColumns": DEFAULT_COLUMNS + columns}
        states[RUNS_TABLE_KEY.format(id=experiment.experiment_id)] = json.dumps(state)
    return states


def defaults_script(experiments) -> str:
    """The ``<script>`` that writes the missing local-storage entries (see the module doc)."""
    entries = {key: json.dumps(value) for key, value in UI_DEFAULTS.items()}
    entries.update(runs_table_states(experiments))
    payload = json.dumps(entries).replace("</", "<\\/")
    return (
        "<script>(function(){try{var d=" + payload + ";"
        "for(var k in d){if(window.localStorage.getItem(k)===null)"
        "{window.localStorage.setItem(k,d[k]);}}}catch(e){}})();</script>"
    )


def _experiments():
    from mlflow.entities import ViewType
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store().search_experiments(view_type=ViewType.ACTIVE_ONLY,
                                                    max_results=1000)


def add_defaults(response):
    """Flask ``after_request`` hook: put :func:`defaults_script` at the top of the UI's page."""
    if response.status_code != 200 or response.mimetype != "text/html":
        return response
    response.direct_passthrough = False
    page = response.get_data(as_text=True)
    if "<head>" not in page:
        return response
    try:
        experiments = _experiments()
    except Exception:  # the store is unreachable: the page still loads, with MLflow's defaults
        experiments = []
    response.set_data(page.replace("<head>", "<head>" + defaults_script(experiments), 1))
    # the page now depends on the store: never answer "not modified" from the file's ETag
    response.headers.pop("ETag", None)
    response.headers.pop("Last-Modified", None)
    response.headers["Cache-Control"] = "no-store"
    return response


def create_app():
    """MLflow's server app with :func:`add_defaults`; the ASGI app when MLflow serves with
    uvicorn (its default), the Flask app otherwise."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app

    app.after_request(add_defaults)
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import app as asgi_app  # wraps the same Flask app

        return asgi_app
    return app


__all__ = ["UI_DEFAULTS", "add_defaults", "column_key", "create_app", "defaults_script",
           "runs_table_states"]
