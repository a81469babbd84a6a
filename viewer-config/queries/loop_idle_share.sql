-- Per loop thread: how much of the time spent inside loop iterations was
-- idle (waiting in `select`) and how much was busy running callbacks.
-- A busy share near 100% means the loop is saturated: new work waits.
-- Only time inside `loop iteration` slices counts (not time outside
-- run_forever/run_until_complete).
with iterations as (
  select s.id, s.dur, s.track_id
  from slice s
  where s.name = 'loop iteration' and s.dur >= 0
),
waits as (
  select s.parent_id, sum(s.dur) as dur
  from slice s
  where s.name = 'select' and s.depth = 1
  group by s.parent_id
)
select
  p.pid,
  p.name as process,
  t.tid,
  t.name as thread,
  count(*) as iterations,
  round(sum(i.dur) / 1e6, 3) as loop_ms,
  round(sum(ifnull(w.dur, 0)) / 1e6, 3) as idle_in_select_ms,
  round(sum(i.dur - ifnull(w.dur, 0)) / 1e6, 3) as busy_ms,
  round(100.0 * sum(ifnull(w.dur, 0)) / max(sum(i.dur), 1), 1) as idle_pct
from iterations i
left join waits w on w.parent_id = i.id
join thread_track tt on tt.id = i.track_id
join thread t on t.utid = tt.utid
left join process p on p.upid = t.upid
group by t.utid, p.pid, p.name, t.tid, t.name
order by idle_pct;
