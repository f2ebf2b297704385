"""Maintenance and closure (pure). Once resolved, per round (a reopened incident is maintained again): the
``resolved`` message, open children resolved with the parent's resolution (only those the platform did not
cascade and that are still linked), the review tasks (once, due in business days), and the metrics note.
Closed on the platform: closed too when the review tasks are done (final note, ``closed`` message), else it
stays in maintenance and says which tasks it waits for, once."""

from __future__ import annotations

from datetime import datetime, timedelta

from connector.core.actions import ActionKey, AddNote, CreateReview, CreateTask, ResolveChild
from connector.process import metrics
from connector.process.incident import IncidentPlan


def business_days(due: timedelta) -> int:
    """Whole business days of a review task's ``due`` (``5d`` -> 5; ``36h`` -> 2, rounded up)."""
    seconds = due.total_seconds()
    return max(0, int(-(-seconds // 86400)))


def maintain(plan: IncidentPlan, canceled: bool = False) -> None:
    """The duties of a resolved incident, once per round; a canceled one only records the moment."""
    maintenance = plan.progress.maintenance
    if plan.epoch in maintenance.maintained:
        return
    maintenance.maintained.append(plan.epoch)
    resolved = plan.value("resolved_at") or plan.now
    maintenance.resolved_at = resolved
    plan.progress.stage_events.maintenance[plan.epoch] = plan.now
    plan.event("resolved", plan.value("state"), by="platform")
    if canceled:
        return
    plan.message("resolved", ActionKey.comms(plan.mid, "resolved", round=plan.epoch), stage="maintenance")
    resolve_children(plan)
    plan_review_tasks(plan, resolved)
    m = metrics.compute(plan.record, plan.process, plan.now)
    plan.actions.append(AddNote(key=ActionKey.note(plan.mid, "metrics", plan.epoch), target=plan.target,
                                rule=plan.record.rule, reason="maintenance: metrics", text=metrics.note_text(m)))


def resolve_children(plan: IncidentPlan) -> None:
    """Resolve the children still open and still linked, with the parent's resolution."""
    children = plan.run.tickets([c for c in plan.record.children if c != plan.record.id])
    key = plan.label
    notes = f"Resolved with major incident {key}: {plan.resolution_text()}."
    for child_id in sorted(children):
        child = children[child_id]
        # platforms that cascade (ServiceNow with MIM) already resolved these; only the rest are ours,
        # and only while they are still linked (a human may have unlinked one)
        if not child.is_open or child.parent != plan.target:
            continue
        plan.actions.append(ResolveChild(key=ActionKey.resolve(child_id, plan.mid, plan.epoch), target=child_id,
                                         parent=plan.target, rule=plan.record.rule,
                                         reason=f"major incident {key} resolved", notes=notes))


def plan_review_tasks(plan: IncidentPlan, resolved: datetime) -> None:
    """The process file's review tasks, once (not again after a reopening), due in business days from
    ``resolved``."""
    maintenance = plan.progress.maintenance
    if maintenance.review_planned:
        return
    maintenance.review_planned = True
    tasks = plan.process.review.tasks
    maintenance.review_tasks_planned = len(tasks)
    key = plan.label
    if tasks and "review" in plan.ctx.duties:
        # the platform models the review as a record of its own (JSM's post-incident review) holding the tasks
        title = plan.value("title") or plan.record.rule
        plan.actions.append(CreateReview(key=ActionKey.review(plan.mid), target=plan.target, rule=plan.record.rule,
                                         reason="maintenance: the post-incident review",
                                         title=f"Post-incident review of {key}: {title}",
                                         description=f"Review of major incident {key}, {plan.resolution_text()}. "
                                                     f"{len(tasks)} review tasks.",
                                         owner=plan.progress.containment.manager))
    for n, task in enumerate(tasks, start=1):
        due = plan.run.calendar.add_business_days(resolved, business_days(task.due))
        description = task.description or f"Post-implementation review of major incident {key}."
        plan.actions.append(CreateTask(key=ActionKey.task(plan.mid, n), target=plan.target, rule=plan.record.rule,
                                       reason=f"maintenance: review task {n} of {len(tasks)}",
                                       title=f"{task.title} ({key})", description=description,
                                       owner=task.owner or plan.progress.containment.manager, due=due))


def reviews_done(plan: IncidentPlan) -> bool:
    """The review tasks are known done (every one read back resolved, closed or canceled), or there are
    none to wait for."""
    return metrics.reviews_done(plan.record)


def wait_for_reviews(plan: IncidentPlan) -> None:
    """Closed on the platform with review tasks open: stay in maintenance and say so, once."""
    noted = plan.progress.maintenance.waiting_noted
    if plan.epoch in noted:
        return
    noted.append(plan.epoch)
    followed = plan.record.followup.review_tasks
    planned = metrics.planned_reviews(plan.record)
    open_tasks = list(plan.record.followup.review_open)
    if followed is not None:
        count = max(planned, followed.total) - followed.done
    else:
        count = planned
    plan.event("waiting_for_reviews", count)
    which = f": {', '.join(open_tasks)}" if open_tasks else ""
    plan.actions.append(AddNote(
        key=ActionKey.note(plan.mid, "waiting", plan.epoch), target=plan.target, rule=plan.record.rule,
        reason="closed on the platform, review tasks open: the process stays in maintenance",
        text=f"Major incident {plan.label} is closed; the process stays in maintenance, waiting for {count} review "
             f"task{'s' if count != 1 else ''}{which}."))


def close(plan: IncidentPlan) -> None:
    """The final note and the ``closed`` message, once per round."""
    closure = plan.progress.closure
    if closure.closed:
        return
    closure.closed = True
    closure.closed_at = plan.now
    plan.progress.stage_events.closed[plan.epoch] = plan.now
    plan.event("closed", plan.value("state"), by="platform")
    m = metrics.compute(plan.record, plan.process, plan.now)
    plan.actions.append(AddNote(
        key=ActionKey.note(plan.mid, "closed", plan.epoch), target=plan.target, rule=plan.record.rule,
        reason="closed: final note",
        text=f"Major incident {plan.label} is closed. Impact {metrics.human_duration(m.impact_s)}, {m.children} related "
             f"tickets, {m.updates_sent} updates sent, review tasks done {metrics.review_text(m)}. Stage: closed."))
    plan.message("closed", ActionKey.comms(plan.mid, "closed", round=plan.epoch), stage="closed")


__all__ = ["business_days", "maintain", "resolve_children", "plan_review_tasks", "reviews_done", "wait_for_reviews",
           "close"]
