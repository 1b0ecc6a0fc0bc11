"""The Results page: a finished run's evaluation, its mistakes to fix (relabel or, for a tagger,
edit the tags; delete; undo), retrain."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from sortsight.errors import DataError
from sortsight.studio import fixes, runs
from sortsight.studio import projects as pj
from sortsight.studio.core import JobDep, ProjectDep, Studio, StudioDep
from sortsight.studio.routes_data import data_summary
from sortsight.studio.routes_train import start_training_job
from sortsight.studio.store import Job, Project

router = APIRouter()


# results ----------------------------------------------------------------------------------
def _result_job(studio: Studio, project: Project, job_id: int | None) -> Job | None:
    if job_id is not None:
        return studio.job(project, job_id)
    for job in studio.project_jobs(project, "train"):
        if runs.job_run(job.folder).has_model():
            return job
    return None


def _project_rel(project_dir: Path, path: str) -> str | None:
    """A path from an evaluation made relative to the project, or None when it is outside it."""
    try:
        return str(Path(path).resolve().relative_to(project_dir.resolve()))
    except (ValueError, OSError):
        return None


def _mistakes(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """Wrong predictions of an ``evaluation.json``, worst first: highest loss, or for a tagger
    the most wrong tags (then the least sure of its own tags)."""
    rows = evaluation.get("predictions") or evaluation.get("top_losses") or []
    if evaluation.get("task") == "multi_label":
        wrong = [r for r in rows if isinstance(r, dict) and int(r.get("wrong") or 0) > 0]
        return sorted(wrong, key=lambda r: (-int(r.get("wrong") or 0), str(r.get("path", ""))))
    wrong = [r for r in rows if isinstance(r, dict) and r.get("true") != r.get("predicted")]
    return sorted(wrong, key=lambda r: -float(r.get("loss") or 0.0))


#: the numbers of an evaluation shown up front, in words (the rest are under "All numbers")
_MAIN_METRICS = {
    "accuracy": "Accuracy",
    "f1_macro": "F1 score (average over classes)",
    "balanced_accuracy": "Balanced accuracy",
}


#: the same for a tagger's evaluation
_MAIN_TAG_METRICS = {
    "f1_micro": "F1 score (all tags together)",
    "f1_macro": "F1 score (average over tags)",
    "map": "Mean average precision",
    "subset_accuracy": "Images with every tag right",
}


def tag_verdict(evaluation: dict[str, Any]) -> str:
    """One sentence on a tagger's ``evaluation.json``: how many images have every tag right, and
    the weakest tag."""
    split = "test" if evaluation.get("split") == "test" else "validation"
    m = evaluation.get("metrics") or {}
    n = int(m.get("n_images") or 0)
    right = round(float(m.get("subset_accuracy") or 0.0) * n)
    text = f"{right} of {n} {split} images have every tag right"
    rows = [r for r in evaluation.get("per_tag") or [] if int(r.get("support") or 0) > 0]
    if rows:
        weakest = min(rows, key=lambda r: (float(r.get("f1") or 0.0), str(r.get("tag"))))
        if float(weakest.get("f1") or 0.0) < 1.0:
            text += (
                f"; the weakest tag is '{weakest['tag']}' (F1 {100 * float(weakest.get('f1') or 0):.0f}%, "
                f"{int(weakest.get('fn') or 0)} missed, {int(weakest.get('fp') or 0)} given wrongly)"
            )
    return text + "."


def verdict(evaluation: dict[str, Any]) -> str:
    """One sentence on an ``evaluation.json``: "99 of 100 test images right; most confused: …"."""
    from sortsight.report import summary_sentence

    if evaluation.get("task") == "multi_label":
        return tag_verdict(evaluation)
    split = "test" if evaluation.get("split") == "test" else "validation"
    return summary_sentence(evaluation.get("labels") or [], evaluation.get("confusion_matrix") or [], split)


@router.get("/projects/{project_id}/results", response_class=HTMLResponse)
def results_page(
    request: Request, studio: StudioDep, project: ProjectDep, job: int | None = None
) -> HTMLResponse:
    folder = studio.project_dir(project)
    chosen = _result_job(studio, project, job)
    evaluation: dict[str, Any] | None = None
    mistakes: list[dict[str, Any]] = []
    if chosen is not None:
        evaluation = runs.job_run(chosen.folder).evaluation()
        for item in _mistakes(evaluation or {})[:60]:
            rel = _project_rel(folder, str(item.get("path", "")))
            exists = rel is not None and (folder / rel).is_file()
            mistakes.append({**item, "rel": rel, "exists": exists})
    summary = data_summary(studio, project)
    summary_classes = list(summary.get("classes", []))
    tagged = bool(evaluation and evaluation.get("task") == "multi_label")
    if tagged:  # each mistake's editor starts from the image's tags as they are now
        tag_of = summary.get("tag_of") or {}
        for item in mistakes:
            item["now"] = tag_of.get(item["rel"], item.get("true") or [])
    finished = [j for j in studio.project_jobs(project, "train") if j.status == "finished"]
    history = fixes.fix_history(folder)[:20]
    return studio.render(
        request,
        "results.html",
        project=project,
        tab="results",
        job=chosen,
        evaluation=evaluation,
        mistakes=mistakes,
        classes=summary_classes,
        history=history,
        can_undo=any(not h["undone"] for h in history),
        finished=finished,
        verdict=verdict(evaluation) if evaluation else "",
        main_metrics=_MAIN_TAG_METRICS if tagged else _MAIN_METRICS,
        tagged=tagged,
    )


@router.get("/projects/{project_id}/jobs/{job_id}/files/{name}")
def run_file(job: JobDep, name: str) -> FileResponse:
    """A file of a train job's run folder: report.html, confusion matrix PNG, leaderboard, ..."""
    run = runs.run_folder(job.folder)
    path = pj.resolve_inside(run, name)
    if not path.is_file():
        raise DataError(f"'{name}' does not exist in this run (yet).")
    return FileResponse(path)


@router.post("/projects/{project_id}/fix/relabel")
def fix_relabel(
    request: Request, studio: StudioDep, project: ProjectDep, path: str = Form(...), label: str = Form(...)
) -> Any:
    folder = studio.project_dir(project)
    destination = fixes.relabel(folder, path, label)
    return _after_fix(request, project, f"Moved {Path(path).name} to '{label}' ({destination.parent.name}/).")


@router.post("/projects/{project_id}/fix/tags")
async def fix_tags(request: Request, studio: StudioDep, project: ProjectDep) -> Any:
    """Give an image of a tagging project the ticked tags plus any typed in ``new_tags``."""
    form = await request.form()
    path = str(form.get("path") or "")
    if not path:
        raise DataError("No image was given: tick its tags on the Results or Data page and save.")
    ticked = [str(v) for v in form.getlist("tag") if isinstance(v, str)]
    typed = pj.parse_tags(str(form.get("new_tags") or ""))
    tags = list(dict.fromkeys([*ticked, *typed]))
    before = await run_in_threadpool(fixes.retag, studio.project_dir(project), path, tags)
    name = Path(path).name
    if before is None:
        return _after_fix(request, project, f"{name} already had these tags; nothing changed.")
    return _after_fix(request, project, f"Tags of {name}: {_tag_text(before)} → {_tag_text(tags)}.")


def _tag_text(tags: list[str]) -> str:
    return " | ".join(sorted(tags)) if tags else "no tag"


@router.post("/projects/{project_id}/fix/delete")
def fix_delete(request: Request, studio: StudioDep, project: ProjectDep, path: str = Form(...)) -> Any:
    fixes.trash(studio.project_dir(project), path)
    return _after_fix(request, project, f"Moved {Path(path).name} to the project's trash.")


@router.post("/projects/{project_id}/fix/undo")
def fix_undo(request: Request, studio: StudioDep, project: ProjectDep) -> Any:
    item = fixes.undo_last(studio.project_dir(project))
    if item is None:
        raise DataError("There is nothing to undo.")
    return _after_fix(request, project, f"Undid the {item['action']} of {Path(item['source']).name}.")


def _after_fix(request: Request, project: Project, message: str) -> Any:
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"ok": True, "message": message})
    back = request.headers.get("referer") or f"/projects/{project.id}/results"
    back = back.split("?")[0]
    return RedirectResponse(f"{back}?msg={quote(message)}", status_code=303)


@router.post("/projects/{project_id}/jobs/{job_id}/retrain")
async def retrain(studio: StudioDep, project: ProjectDep, old: JobDep) -> RedirectResponse:
    """Train again with the settings of an earlier job (after fixing the data)."""
    if old.kind != "train":
        raise DataError("Only a training job can be run again.")
    job = await run_in_threadpool(start_training_job, studio, project, dict(old.params))
    return RedirectResponse(f"/projects/{project.id}/jobs/{job.id}", status_code=303)
