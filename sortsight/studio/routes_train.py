"""The Train page: settings, estimate, learning-rate test, start, live progress, stop
(the Results page, with its fixes and retrain, is :mod:`.routes_results`)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from sortsight.config import parse_duration
from sortsight.errors import ConfigError, DataError
from sortsight.predictions import read_page
from sortsight.runs import EVALUATION
from sortsight.studio import projects as pj
from sortsight.studio import runs
from sortsight.studio.core import JobDep, ProjectDep, Studio, StudioDep
from sortsight.studio.routes_data import data_summary
from sortsight.studio.runner import error_line, read_state
from sortsight.studio.store import Job, Project

router = APIRouter()

#: the longest "Estimate the time" may take (it measures a few batches; a loaded machine is slow)
_ESTIMATE_TIMEOUT = 300


#: The TrainConfig options offered in the "advanced" panel (their help, choices, ranges and
#: defaults come from the fields' own declarations, as the CLI's do).
ADVANCED = (
    "lr",
    "batch_size",
    "warmup_ratio",
    "gradient_accumulation",
    "optimizer",
    "scheduler",
    "weight_decay",
    "seed",
    "early_stopping_patience",
    "max_samples",
    "valid_split",
    "test_split",
    "image_size",
    "augmentation",
    "strategy",
    "mixed_precision",
)


#: The TrainConfig options shown above the advanced panel (their ranges come from the fields).
BASIC = ("candidates", "epochs")


def _declared() -> dict[str, dict[str, Any]]:
    """Every TrainConfig field's description, by name (:func:`sortsight.config.describe_fields`)."""
    from sortsight.config import TrainConfig, describe_fields

    return {d["name"]: d for d in describe_fields(TrainConfig)}


def advanced_options() -> dict[str, dict[str, Any]]:
    """The advanced panel's options: name -> the field's description (``help``, ``choices``,
    ``min``, ``max``, ``types``, ``default_text``)."""
    declared = _declared()
    return {name: declared[name] for name in ADVANCED}


def _number(name: str, raw: str, spec: dict[str, Any]) -> Any:
    """``raw`` as the field's number type, within its declared range; a field that also takes a
    name (``valid_split``: a split's name) keeps other text as it is."""
    kind = int if "int" in spec["types"] else float if "float" in spec["types"] else None
    if kind is None:
        return raw
    try:
        value = kind(raw)
    except ValueError as exc:
        if "str" in spec["types"]:
            return raw
        what = "whole number" if kind is int else "number"
        raise ConfigError(f"'{name}' must be a {what}, got '{raw}'.") from exc
    low, high = spec.get("min"), spec.get("max")
    if low is not None and value < low:
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ConfigError(f"'{name}' must be {bound}, got {raw}.")
    if high is not None and value > high:
        bound = f"between {low:g} and {high:g}" if low is not None else f"at most {high:g}"
        raise ConfigError(f"'{name}' must be {bound}, got {raw}.")
    return value


def model_choices() -> list[dict[str, Any]]:
    """The models offered on the Train page: the default ("auto": sortsight's own choice) and the
    bundled ones with their size and speed."""
    from sortsight.config import TrainConfig
    from sortsight.models import BUNDLED_MODELS

    default = TrainConfig.__dataclass_fields__["model"].default
    choices = [{"name": "auto", "label": f"default ({default})", "note": ""}]
    for spec in BUNDLED_MODELS.values():
        choices.append(
            {
                "name": spec.name,
                "label": f"{spec.name} — {spec.params_m:.1f}M parameters, {spec.input_size}px",
                "note": spec.note,
            }
        )
    lite0, lite2 = BUNDLED_MODELS["efficientnet_lite0"], BUNDLED_MODELS["efficientnet_lite2"]
    choices.append(
        {
            "name": f"{lite0.name}+{lite2.name}",
            "label": f"Lite0 + Lite2 side by side — {lite0.params_m + lite2.params_m:.1f}M parameters, "
            f"{lite0.input_size} + {lite2.input_size}px",
            "note": "both networks' features under one head, no fine-tuning: the most accurate on "
            "images from another source in our benchmarks; its image features take ~2.8× Lite0's "
            "time; transformers loads it with trust_remote_code=True",
        }
    )
    return choices


def _train_params(form: dict[str, str]) -> dict[str, Any]:
    """Validated training settings from the Train form."""
    params: dict[str, Any] = {}
    names = {c["name"] for c in model_choices()}
    model = form.get("model", "auto").strip() or "auto"
    if model not in names:
        raise ConfigError(f"Unknown model '{model}'. Choose one of: {', '.join(sorted(names))}.")
    params["model"] = model
    declared = _declared()
    for key in ("epochs", "candidates"):
        raw = form.get(key, "").strip()
        if raw:
            params[key] = _number(key, raw, declared[key])
    budget = form.get("time_budget", "").strip()
    if budget:
        # the box counts minutes; a duration written out (90s, 1h30m) is taken as it is, and
        # TrainConfig's own parser is the one check of both
        text = f"{budget}m" if re.fullmatch(r"\d+(?:\.\d+)?", budget) else budget
        parse_duration(text)
        params["time_budget"] = text
    for name in ADVANCED:
        spec = declared[name]
        raw = form.get(name, "").strip()
        if not raw:
            continue
        if spec["choices"]:
            if raw not in spec["choices"]:
                raise ConfigError(f"'{name}' must be one of {', '.join(spec['choices'])}, got '{raw}'.")
            params[name] = raw
        else:
            params[name] = _number(name, raw, spec)
    return params


def train_args(data: Path, run: Path | None, params: dict[str, Any]) -> list[str]:
    """The ``sortsight train`` arguments for ``params`` (no ``--out`` when ``run`` is None)."""
    args = ["train", str(data)] + (["--out", str(run)] if run is not None else [])
    for key, value in params.items():
        if key == "model" and value == "auto":
            continue
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def _for_project(folder: Path, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with what the project's kind implies: a tagging project trains a multi-label tagger."""
    return {**params, "task": "multi_label"} if pj.is_tagged(folder) else params


def start_training_job(studio: Studio, project: Project, params: dict[str, Any]) -> Job:
    folder = studio.project_dir(project)
    data = pj.training_source(folder)
    params = _for_project(folder, params)
    summary_error = _data_problem(studio, project)
    if summary_error:
        raise DataError(f"Not ready for training yet. {summary_error}")

    def steps(job_folder: Path) -> list[list[str]]:
        run = runs.run_folder(job_folder)
        return [studio.step(*train_args(data, run, params)), studio.step("evaluate", str(run))]

    with studio.start_lock:
        if studio.active_job(project, "train"):
            raise DataError(
                "A training job is already running in this project. Stop it or wait for it to finish."
            )
        return studio.jobs.start(project.id, "train", folder / "jobs", steps, params)


def _data_problem(studio: Studio, project: Project) -> str:
    summary = data_summary(studio, project)
    if not summary.get("ok"):
        return str(summary.get("error", "no images yet"))
    if summary.get("task") == "multi_label":
        if not summary.get("classes"):
            return "No image has a tag yet. Give the images their tags on the Data page."
        return ""
    if len(summary.get("classes", [])) < 2:
        return "A model needs at least two classes (labels). Add images of another class on the Data page."
    return ""


def _form_dict(form: Any) -> dict[str, str]:
    return {key: str(value) for key, value in form.items() if isinstance(value, str)}


# train ------------------------------------------------------------------------------------
@router.get("/projects/{project_id}/train", response_class=HTMLResponse)
def train_page(request: Request, studio: StudioDep, project: ProjectDep) -> HTMLResponse:
    jobs = studio.project_jobs(project, "train")
    return studio.render(
        request,
        "train.html",
        project=project,
        tab="train",
        jobs=jobs,
        data_problem=_data_problem(studio, project),
        models=model_choices(),
        advanced=advanced_options(),
        basic={name: _declared()[name] for name in BASIC},
        tagged=pj.is_tagged(studio.project_dir(project)),
        active=next((j for j in jobs if j.active), None),
    )


@router.post("/projects/{project_id}/train")
async def start_train(request: Request, studio: StudioDep, project: ProjectDep) -> RedirectResponse:
    params = _train_params(_form_dict(await request.form()))
    job = await run_in_threadpool(start_training_job, studio, project, params)
    return RedirectResponse(f"/projects/{project.id}/jobs/{job.id}", status_code=303)


def _trial(
    studio: Studio,
    project: Project,
    params: dict[str, Any],
    flag: str,
    *,
    key: str,
    slow: str,
    failed: str,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run ``sortsight train DATA [settings] FLAG --json`` (``--estimate-only``, ``--lr-find``) with
    the form's settings; its JSON object, which must hold a number under ``key``. ``slow`` and
    ``failed`` are the one-line errors for a timeout and for a failed run (+ the CLI's error)."""
    problem = _data_problem(studio, project)
    if problem:
        raise DataError(f"Not ready for training yet. {problem}")
    folder = studio.project_dir(project)
    data = pj.training_source(folder).resolve()
    if cwd is not None:
        cwd.mkdir(exist_ok=True)
    command = studio.step(*train_args(data, None, _for_project(folder, params)), flag, "--json")
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_ESTIMATE_TIMEOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        raise DataError(slow) from exc
    result = _json_object(done.stdout)
    if done.returncode != 0 or not isinstance(result.get(key), (int, float)):
        detail = error_line(done.stderr + done.stdout) or f"exit code {done.returncode}"
        raise DataError(f"{failed}: {detail}")
    return result


def _estimate(studio: Studio, project: Project, params: dict[str, Any]) -> dict[str, Any]:
    """Run ``sortsight train --estimate-only --json`` with the form's settings; its JSON, plus words."""
    result = _trial(
        studio,
        project,
        params,
        "--estimate-only",
        key="seconds",
        slow="Measuring took too long; start the training and watch its progress instead.",
        failed="The time could not be measured",
    )
    seconds = float(result["seconds"])
    images = sum(int(result.get(k) or 0) for k in ("n_train", "n_valid"))
    if not images:
        images = int(data_summary(studio, project).get("totals", {}).get("total", 0))
    # auto's fine-tuning comes on top where the head leaves room (only known once it is fitted)
    extra = float(result.get("finetune_seconds") or 0.0) if params.get("strategy", "auto") == "auto" else 0.0
    return {
        **result,
        "seconds": seconds,
        "human": runs.fmt_duration(seconds),
        "images": images,
        "finetune_seconds": extra,
        "finetune_human": runs.fmt_duration(extra).removeprefix("about ") if extra else "",
    }


def _json_object(text: str) -> dict[str, Any]:
    """The JSON object a command printed (all of its output, or its last line that is one)."""
    for candidate in (text, *reversed(text.splitlines())):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


@router.post("/api/projects/{project_id}/estimate")
async def estimate_api(request: Request, studio: StudioDep, project: ProjectDep) -> JSONResponse:
    """Measure how long the Train form's settings would take (a few seconds), before starting."""
    params = _train_params(_form_dict(await request.form()))
    return JSONResponse(await run_in_threadpool(_estimate, studio, project, params))


def _lr_find(studio: Studio, project: Project, params: dict[str, Any]) -> dict[str, Any]:
    """Run ``sortsight train --lr-find --json`` with the form's settings in the project's
    ``lr_find/`` folder; the suggestions and the plot's address."""
    plots = studio.project_dir(project) / "lr_find"
    result = _trial(
        studio,
        project,
        params,
        "--lr-find",
        key="suggested",
        slow="The learning-rate test took too long; train with the default rate instead.",
        failed="The learning rate could not be measured",
        cwd=plots,
    )
    name = Path(str(result.get("plot", ""))).name
    return {
        "suggested": float(result["suggested"]),
        "valley": result.get("valley"),
        "steep": result.get("steep"),
        "plot_url": f"/projects/{project.id}/lr-find/{quote(name)}" if name else "",
    }


@router.post("/api/projects/{project_id}/lr-find")
async def lr_find_api(request: Request, studio: StudioDep, project: ProjectDep) -> JSONResponse:
    """fastai's learning-rate range test with the Train form's settings: a suggestion and its plot."""
    params = _train_params(_form_dict(await request.form()))
    params.pop("epochs", None)
    params.pop("candidates", None)
    return JSONResponse(await run_in_threadpool(_lr_find, studio, project, params))


@router.get("/projects/{project_id}/lr-find/{name}")
def lr_find_plot(studio: StudioDep, project: ProjectDep, name: str) -> FileResponse:
    """A plot the learning-rate test wrote (``lr_find.png``, ``lr_find-2.png``, ...)."""
    path = pj.resolve_inside(studio.project_dir(project) / "lr_find", name)
    if path.suffix != ".png" or not path.is_file():
        raise DataError(f"'{name}' is not a learning-rate plot of this project.")
    return FileResponse(path)


# jobs -------------------------------------------------------------------------------------
def job_view(studio: Studio, project: Project, job: Job) -> dict[str, Any]:
    """Everything the job page shows, as JSON (polled by the page while the job runs)."""
    folder = Path(job.folder) if job.folder else None
    view: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "error": job.error,
        "params": job.params,
        "stop_requested": job.stop_requested,
        "created": job.created,
        "finished": job.finished,
    }
    if folder is None:
        return view
    state = read_state(folder)
    view["step"], view["steps"] = state.get("step", 0), state.get("steps", 0)
    try:
        text = (folder / "log.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    # the shown log leaves out the runner's "$ command" lines (the full log has them)
    view["log_tail"] = "\n".join(line for line in text[-6000:].splitlines() if not line.startswith("$ "))[
        -4000:
    ]
    if job.kind == "train":
        run = runs.run_folder(folder)
        progress = runs.train_progress(run)
        view.update(progress.to_dict())
        if job.active and view["step"] > 1:
            view["now"] = "Checking the model on the held-out images"
        rows = runs.train_metrics(run)
        view["series"] = runs.metric_series(rows)
        view["leaderboard"] = runs.read_leaderboard(run)
        view["has_model"] = progress.model_ready is not None or runs.job_run(folder).has_model()
        view["has_evaluation"] = (run / EVALUATION).is_file()  # polled: not parsed here
    elif job.kind == "predict":
        csv_path = folder / "predictions.csv"
        _, total = read_page(csv_path, limit=0)
        view["predicted"] = total
        view["expected"] = job.params.get("count", 0)
    return view


@router.get("/projects/{project_id}/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, studio: StudioDep, project: ProjectDep, job: JobDep) -> HTMLResponse:
    tab = {"train": "train", "predict": "use"}.get(job.kind, "data")
    return studio.render(
        request, "job.html", project=project, tab=tab, job=job, view=job_view(studio, project, job)
    )


@router.get("/api/projects/{project_id}/jobs/{job_id}")
def job_api(studio: StudioDep, project: ProjectDep, job: JobDep) -> JSONResponse:
    return JSONResponse(job_view(studio, project, job))


@router.get("/projects/{project_id}/jobs/{job_id}/log")
def job_log(job: JobDep) -> PlainTextResponse:
    try:
        text = (Path(job.folder) / "log.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return PlainTextResponse(text)


@router.post("/projects/{project_id}/jobs/{job_id}/stop")
async def stop_job(request: Request, studio: StudioDep, project: ProjectDep, job: JobDep) -> RedirectResponse:
    job = await run_in_threadpool(studio.jobs.stop, job)
    return RedirectResponse(
        f"/projects/{project.id}/jobs/{job.id}?msg={quote('Job ' + job.status + '.')}", 303
    )
