"""Recurring jobs (issue 34), the socket-free part: rules and the job book, driven with a
hand-held clock (seconds since the epoch passed in; nothing reads the time). Every
outcome, RRULE edge cases (DST changes, COUNT, UNTIL), a bad rule recorded without
stopping the others, and a restart from the SQLite store."""

from __future__ import annotations

from datetime import datetime

import pytest

from zmqpipeline import Schedule
from zmqpipeline.schedule import BadRule, parse_rule, read_jobs_csv
from zmqpipeline.schedule.book import JobBook
from zmqpipeline.schedule.outcomes import Outcome, outcome_of_result
from zmqpipeline.schedule.rules import parse_time, zone
from zmqpipeline.schedule.store import Run, ScheduleStore

pytest.importorskip("dateutil", reason="RRULEs need python-dateutil (pip install '.[schedule]')")

PARIS = zone("Europe/Paris")
UTC = zone("UTC")
T0 = 1_700_000_000.0  # a whole second


def at(*fields: int, tz=PARIS) -> float:
    return datetime(*fields, tzinfo=tz).timestamp()


def local(t: float, tz=PARIS) -> datetime:
    return datetime.fromtimestamp(t, tz)


def book(schedule: Schedule | None = None, store: ScheduleStore | None = None) -> JobBook:
    schedule = schedule or Schedule()
    return JobBook("POLL", schedule, store or ScheduleStore(None), UTC)


def run(b: JobBook, job: str, outcome: str, now: float, **kw) -> None:
    b.ended(job, Outcome(outcome, **kw), now, Run(now - 0.1, "w1", 0.1, outcome))


def due_ids(b: JobBook, now: float) -> list[str]:
    return [job.job for _, job in b.pop_due(now)]


# -- rules ------------------------------------------------------------------------------


def test_keyword_rules_first_and_next_times():
    now = parse_rule("NOW", T0, UTC)
    assert (now.first(T0), now.next(T0 + 5)) == (T0, None)
    cont = parse_rule("continue", T0, UTC)
    assert (cont.first(T0), cont.next(T0 + 5)) == (T0, T0 + 5)
    stop = parse_rule("STOP", T0, UTC)
    assert (stop.first(T0), stop.next(T0)) == (None, None)
    future = parse_rule("AT:2030-01-01T00:00:00Z", T0, UTC)
    assert future.first(T0) == at(2030, 1, 1, tz=UTC) and future.next(T0) is None
    past = parse_rule("AT:2001-01-01T00:00:00+02:00", T0, UTC)
    assert past.first(T0) == T0  # a time that has passed: at once, once


def test_an_at_time_without_offset_is_in_the_schedules_zone():
    assert parse_rule("AT:2030-06-01T02:00", T0, PARIS).at == at(2030, 6, 1, 2, 0)
    assert parse_time("1700000000.5", PARIS) == T0 + 0.5


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty rule"),
        ("EVERY 5 MINUTES", "unknown rule"),
        ("AT:yesterday", "not an ISO 8601 time"),
        ("FREQ=FORTNIGHTLY", "bad RRULE"),
        ("FREQ=DAILY;BYHOUR=25", "bad RRULE"),
        ("FREQ=DAILY;UNTIL=20300101T000000", "UTC"),  # iCal: UNTIL in UTC with a zone
    ],
)
def test_a_bad_rule_is_refused_naming_why(text, says):
    with pytest.raises(BadRule, match=says):
        parse_rule(text, T0, UTC)


def test_an_rrule_counts_from_its_start_and_skips_the_times_a_long_run_missed():
    rule = parse_rule("RRULE:FREQ=SECONDLY;INTERVAL=2", T0, UTC)
    assert rule.first(T0) == T0
    assert rule.next(T0 + 0.3) == T0 + 2
    assert rule.next(T0 + 7.5) == T0 + 8  # 2, 4 and 6 passed during the run: not made up


def test_rrule_count_and_until_end_the_rule():
    counted = parse_rule("FREQ=MINUTELY;COUNT=3", T0, UTC)
    times = [counted.first(T0)]
    while (t := counted.next(times[-1])) is not None:
        times.append(t)
    assert times == [T0, T0 + 60, T0 + 120]
    until = parse_rule("FREQ=HOURLY;UNTIL=20231114T233000Z", T0, UTC)  # T0 is 22:13:20Z
    assert until.next(T0) == T0 + 3600 and until.next(T0 + 3600) is None
    floating = parse_rule(
        "DTSTART:20240101T020000\nRRULE:FREQ=DAILY;UNTIL=20240102T020000", 0, PARIS
    )
    assert floating.first(0) == at(2024, 1, 1, 2, 0)
    assert floating.next(at(2024, 1, 1, 2, 0)) == at(2024, 1, 2, 2, 0)
    assert floating.next(at(2024, 1, 2, 2, 0)) is None


def test_a_daily_time_the_clocks_skip_runs_an_hour_later_that_day():
    start = at(2024, 3, 29, 12, 0)
    rule = parse_rule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0", start, PARIS)
    first = rule.first(start)
    assert local(first) == datetime(2024, 3, 30, 2, 30, tzinfo=PARIS)
    skipped = rule.next(first)  # 2024-03-31: 02:00 -> 03:00, 02:30 does not exist
    assert local(skipped).strftime("%m-%d %H:%M %Z") == "03-31 03:30 CEST"
    assert skipped - first == 24 * 3600  # 02:30 CET to 03:30 CEST: one real day
    assert local(rule.next(skipped)).strftime("%m-%d %H:%M") == "04-01 02:30"


def test_a_daily_time_that_comes_twice_runs_once():
    start = at(2024, 10, 26, 12, 0)
    rule = parse_rule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0", start, PARIS)
    first = rule.first(start)  # 2024-10-27: 03:00 -> 02:00, 02:30 twice
    assert local(first).strftime("%m-%d %H:%M %Z") == "10-27 02:30 CEST"
    after = rule.next(first)  # not the second 02:30 an hour later: the next day's
    assert local(after).strftime("%m-%d %H:%M %Z") == "10-28 02:30 CET"
    assert after - first == 25 * 3600


# -- the book: due jobs, in flight, every outcome ----------------------------------------


def test_due_jobs_come_earliest_first_and_a_job_is_never_due_while_it_runs():
    b = book()
    b.set("b", "FREQ=SECONDLY;INTERVAL=1", None, T0, after=T0 + 1)
    b.set("a", "FREQ=SECONDLY;INTERVAL=1", None, T0)
    assert b.next_due_at() == T0
    assert due_ids(b, T0 + 1) == ["a", "b"]
    assert b.jobs["a"].status == "queued"
    assert due_ids(b, T0 + 30) == []  # both still in flight: 29 times passed, none due
    run(b, "a", "ok", T0 + 30.2)
    assert b.jobs["a"].next_run == T0 + 31 and b.jobs["a"].status == "scheduled"
    assert due_ids(b, T0 + 31) == ["a"]


def test_a_job_set_between_seconds_is_never_due_in_the_past():
    """An RRULE counts from a whole second: the next one, not the last (which would make
    its first run late at birth); a keyword rule is due at the very time it was set."""
    b = book()
    b.set("every2", "FREQ=SECONDLY;INTERVAL=2", None, T0 + 0.6)
    b.set("now", "NOW", None, T0 + 0.6)
    b.set("later", "FREQ=SECONDLY;INTERVAL=2", None, T0 + 0.6, after=T0 + 5.2)
    assert [b.jobs[j].next_run for j in ("every2", "now", "later")] == [T0 + 1, T0 + 0.6, T0 + 6]
    assert due_ids(b, T0 + 0.9) == ["now"]
    assert due_ids(b, T0 + 1) == ["every2"]
    run(b, "every2", "ok", T0 + 1.1)
    assert b.jobs["every2"].next_run == T0 + 3  # on its grid from that whole second


def test_backoff_waits_at_least_that_long_then_follows_the_rule():
    b = book()
    b.set("c", "CONTINUE", None, T0)
    b.set("r", "FREQ=SECONDLY;INTERVAL=10", None, T0)
    assert due_ids(b, T0) == ["c", "r"]
    run(b, "c", "backoff", T0 + 1, backoff_s=5.0)
    run(b, "r", "backoff", T0 + 1, backoff_s=12.0)
    assert (b.jobs["c"].status, b.jobs["c"].next_run) == ("backoff", T0 + 6)
    assert b.jobs["r"].next_run == T0 + 20  # the rule's first time >= 13 s
    assert outcome_of_result({"backoff_s": 3}) == Outcome("backoff", backoff_s=3.0)
    assert outcome_of_result({"backoff_s": "soon"}).kind == "ok"  # ignored, and said so
    assert "not a number" in outcome_of_result({"backoff_s": "soon"}).error


def test_stop_unset_failed_and_timed_out_outcomes():
    b = book()
    for job in ("s", "u", "f", "t"):
        b.set(job, "CONTINUE", {"n": job}, T0)
    assert len(b.pop_due(T0)) == 4
    run(b, "s", "stopped", T0 + 1)
    run(b, "u", "unset", T0 + 1)
    run(b, "f", "failed", T0 + 1, error="ValueError: boom")
    run(b, "t", "timed out", T0 + 1, error="timed out: no outcome in 5 s")
    assert (b.jobs["s"].rule, b.jobs["s"].status, b.jobs["s"].next_run) == ("STOP", "stopped", None)
    assert b.jobs["u"].removed and b.jobs["u"].status == "unset"
    assert (b.jobs["f"].status, b.jobs["f"].last_error) == ("failed", "ValueError: boom")
    assert b.jobs["t"].status == "timed out" and b.jobs["t"].next_run is None
    assert b.next_due_at() is None and b.idle()
    assert [r.outcome for r in b.jobs["f"].history] == ["failed"]


def test_reschedule_on_error_keeps_a_failed_job_on_its_rule():
    b = book(Schedule(reschedule_on_error=True))
    b.set("f", "FREQ=SECONDLY;INTERVAL=5", None, T0)
    b.pop_due(T0)
    run(b, "f", "failed", T0 + 1, error="boom")
    assert (b.jobs["f"].status, b.jobs["f"].next_run) == ("failed", T0 + 5)


def test_one_shot_rules_are_done_after_their_run_and_count_ends_a_rule():
    b = book()
    b.set("once", "NOW", None, T0)
    b.set("three", "FREQ=SECONDLY;COUNT=2", None, T0)
    b.pop_due(T0)
    run(b, "once", "ok", T0 + 0.5)
    run(b, "three", "ok", T0 + 0.5)
    assert b.jobs["once"].status == "done" and b.jobs["once"].next_run is None
    assert due_ids(b, T0 + 1) == ["three"]
    run(b, "three", "ok", T0 + 1.2)
    assert b.jobs["three"].status == "done" and b.idle()


def test_a_bad_rule_is_recorded_and_the_other_jobs_go_on():
    b = book(Schedule(jobs={"good": "CONTINUE", "bad": "FREQ=NEVER", "worse": "SOMETIMES"}))
    b.load(T0)
    assert b.jobs["bad"].status == "bad rule" and "FREQ" in b.jobs["bad"].last_error
    assert b.jobs["worse"].status == "bad rule" and "unknown rule" in b.jobs["worse"].last_error
    assert due_ids(b, T0) == ["good"]
    b.set("bad", "NOW", None, T0 + 1)  # fixed by an operator: it runs
    assert b.jobs["bad"].status == "scheduled" and due_ids(b, T0 + 1) == ["bad"]


def test_a_job_set_or_unset_while_it_runs_finds_its_new_rule_at_its_outcome():
    b = book()
    b.set("j", "CONTINUE", None, T0)
    b.set("k", "CONTINUE", None, T0)
    b.pop_due(T0)
    b.set("j", "FREQ=MINUTELY", {"v": 2}, T0 + 1)  # while it runs
    assert due_ids(b, T0 + 2) == []  # not handed out again while it runs
    run(b, "j", "ok", T0 + 2)
    assert b.jobs["j"].next_run == T0 + 61 and b.jobs["j"].data == {"v": 2}
    assert b.unset("k", T0 + 3) and not b.unset("nope", T0 + 3)
    run(b, "k", "ok", T0 + 4)
    assert b.jobs["k"].removed and b.jobs["k"].next_run is None
    assert b.ended("k", Outcome("ok"), T0 + 5, Run(T0, "", 0, "ok")) is None  # not in flight


def test_history_keeps_the_last_runs_of_each_job():
    b = book(Schedule(history=3))
    b.set("j", "CONTINUE", None, T0)
    for i in range(5):
        b.pop_due(T0 + i)
        run(b, "j", "ok", T0 + i + 0.5)
    assert [r.started for r in b.jobs["j"].history] == [T0 + 2.4, T0 + 3.4, T0 + 4.4]


def test_a_restart_keeps_schedules_and_statuses_and_runs_missed_slots_once(tmp_path):
    path = tmp_path / "distributor.schedule.sqlite"
    schedule = Schedule(jobs={"every5": "FREQ=SECONDLY;INTERVAL=5", "stopped": "CONTINUE"})
    store = ScheduleStore(path, history=20)
    b = book(schedule, store)
    b.load(T0)
    b.set("running", "FREQ=MINUTELY", {"x": 1}, T0)
    assert sorted(due_ids(b, T0)) == ["every5", "running", "stopped"]
    run(b, "every5", "ok", T0 + 1)
    run(b, "stopped", "stopped", T0 + 1)
    store.close()  # "running" is still in flight: its outcome never comes

    later = T0 + 3600  # down for an hour: every5 missed 720 times
    store = ScheduleStore(path, history=20)
    b = book(schedule, store)
    b.load(later)
    assert b.jobs["stopped"].status == "stopped" and b.jobs["stopped"].rule == "STOP"
    assert [r.outcome for r in b.jobs["every5"].history] == ["ok"]
    assert b.jobs["running"].data == {"x": 1}
    assert sorted(due_ids(b, later)) == ["every5", "running"]  # once each
    assert due_ids(b, later + 4) == []
    run(b, "every5", "ok", later + 0.5)
    assert b.jobs["every5"].next_run == T0 + 3605  # on its own phase again
    store.close()


def test_a_job_the_code_changed_is_set_again_an_unchanged_one_keeps_its_state(tmp_path):
    path = tmp_path / "s.sqlite"
    store = ScheduleStore(path)
    b = book(Schedule(jobs={"a": "CONTINUE", "b": "CONTINUE"}), store)
    b.load(T0)
    b.pop_due(T0)
    run(b, "a", "stopped", T0 + 1)
    run(b, "b", "unset", T0 + 1)
    store.close()
    store = ScheduleStore(path)
    b = book(Schedule(jobs={"a": "CONTINUE", "b": "FREQ=MINUTELY"}), store)
    b.load(T0 + 10)
    assert b.jobs["a"].status == "stopped"  # as its worker said
    assert b.jobs["b"].status == "scheduled" and b.jobs["b"].rule == "FREQ=MINUTELY"
    store.close()


def test_a_jobs_csv_is_read_and_a_bad_line_is_named(tmp_path):
    good = tmp_path / "jobs.csv"
    good.write_text(
        'job_id,rule\n# a comment\nmail,FREQ=MINUTELY;INTERVAL=5\nlog,NOW,"{""p"": 1}"\n\n'
    )
    assert read_jobs_csv(good) == {
        "mail": ("FREQ=MINUTELY;INTERVAL=5", {}),
        "log": ("NOW", {"p": 1}),
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("a,NOW\nb\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 2: expected JOB_ID,RULE"):
        read_jobs_csv(bad)


def test_schedule_arguments_are_checked():
    with pytest.raises(TypeError, match="job id"):
        Schedule(jobs={"": "NOW"})
    with pytest.raises(TypeError, match="a rule"):
        Schedule(jobs={"a": 5})
    with pytest.raises(ValueError, match="timeout_s"):
        Schedule(timeout_s=0)
    with pytest.raises(ValueError, match="unknown time zone"):
        zone("Mars/Olympus")


def test_the_listing_shows_running_jobs_then_the_next_due_then_the_rest():
    """What the status lists per task (the dashboard's table), at most ``limit`` jobs."""
    b = book()
    b.set("soon", "FREQ=SECONDLY;INTERVAL=5", None, T0, after=T0 + 5)
    b.set("late", "FREQ=SECONDLY;INTERVAL=5", None, T0, after=T0 + 50)
    b.set("run", "CONTINUE", None, T0)
    b.set("fail", "CONTINUE", None, T0)
    b.set("bad", "SOMETIMES", None, T0)
    b.set("gone", "CONTINUE", None, T0)
    b.unset("gone", T0)
    assert due_ids(b, T0 + 1) == ["run", "fail"]
    run(b, "fail", "failed", T0 + 2, error="OSError: full")
    listed = b.listing(10, {"run": {"worker": "w7", "since": T0 + 1.5}})
    assert [j["job"] for j in listed] == ["run", "soon", "late", "fail", "bad"]
    assert listed[0] == {
        "job": "run",
        "rule": "CONTINUE",
        "status": "running",
        "status_at": T0 + 1.5,
        "next_run": None,
        "last_error": None,
        "running_on": "w7",
    }
    assert (listed[1]["next_run"], listed[3]["status"], listed[3]["last_error"]) == (
        T0 + 5,
        "failed",
        "OSError: full",
    )
    assert listed[4]["status"] == "bad rule" and "unknown rule" in listed[4]["last_error"]
    assert [j["job"] for j in b.listing(2, {})] == ["run", "soon"]  # queued: no worker yet
    assert b.listing(2, {})[0]["status"] == "queued"


# -- cron rules (cronsim) -----------------------------------------------------------------


def test_cron_rules_in_their_three_spellings_run_on_cron_times():
    pytest.importorskip("cronsim", reason="cron rules need cronsim (pip install '.[schedule]')")
    start = T0 + 10  # 22:13:30Z
    for text in ("CRON:*/15 * * * *", "*/15 * * * *", "cron: */15  *  * * *"):
        rule = parse_rule(text, start, UTC)
        assert rule.kind == "CRON" and rule.text == text.strip()
        assert rule.first(start) == at(2023, 11, 14, 22, 15, tz=UTC)
        assert rule.next(at(2023, 11, 14, 22, 15, tz=UTC)) == at(2023, 11, 14, 22, 30, tz=UTC)
    assert parse_rule("*/15 * * * *", 0, UTC).first(at(2023, 11, 14, 22, 15, tz=UTC)) == at(
        2023, 11, 14, 22, 15, tz=UTC
    )  # at or after: a time itself is due
    daily = parse_rule("@daily", T0, UTC)
    assert daily.first(T0) == at(2023, 11, 15, tz=UTC)
    either = parse_rule("0 9 13 * FRI", T0, UTC)  # the 13th, or a Friday: cron's "or"
    first = either.first(T0)
    assert local(first, UTC).date().isoformat() == "2023-11-17"  # a Friday before the 13th
    assert local(either.next(at(2023, 12, 12, tz=UTC)), UTC).day == 13  # a Wednesday


def test_a_cron_time_the_clocks_skip_runs_after_the_gap_and_one_that_comes_twice_once():
    pytest.importorskip("cronsim", reason="cron rules need cronsim (pip install '.[schedule]')")
    spring = parse_rule("30 2 * * *", 0, PARIS)
    first = spring.first(at(2024, 3, 30, 12, 0))
    assert local(first) == datetime(2024, 3, 31, 3, 0, tzinfo=PARIS)  # no 02:30 that day
    assert local(spring.next(first)) == datetime(2024, 4, 1, 2, 30, tzinfo=PARIS)
    autumn = parse_rule("30 2 * * *", 0, PARIS)
    once = autumn.first(at(2024, 10, 26, 12, 0))
    assert local(once).hour == 2 and local(autumn.next(once)).day == 28  # not an hour later


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("61 * * * *", "bad cron rule '61 * * * *': Bad minute"),
        ("0 0 31 2 *", "Bad day-of-month"),  # no February 31st: refused, not run never
        ("CRON:0 0 * *", "Wrong number of fields"),
        ("@fortnightly", "unknown rule"),
    ],
)
def test_a_bad_cron_rule_is_refused_naming_why(text, says):
    pytest.importorskip("cronsim", reason="cron rules need cronsim (pip install '.[schedule]')")
    with pytest.raises(BadRule, match=says.replace("*", r"\*")):
        parse_rule(text, T0, UTC)


def test_a_cron_job_in_the_book_is_due_on_its_times():
    pytest.importorskip("cronsim", reason="cron rules need cronsim (pip install '.[schedule]')")
    b = book()
    b.set("nightly", "0 2 * * *", None, T0)  # T0 is 22:13:20Z
    assert b.jobs["nightly"].next_run == at(2023, 11, 15, 2, 0, tz=UTC)
    assert due_ids(b, at(2023, 11, 15, 2, 0, tz=UTC)) == ["nightly"]
    run(b, "nightly", "ok", at(2023, 11, 15, 2, 5, tz=UTC))
    assert b.jobs["nightly"].next_run == at(2023, 11, 16, 2, 0, tz=UTC)
