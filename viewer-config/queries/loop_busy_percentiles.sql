-- Per loop thread: how long each iteration kept the loop busy (its
-- duration minus the time it waited in `select`), as nearest-rank
-- percentiles. A callback that becomes ready waits for the rest of the
-- current iteration and the callbacks ahead of it in the next, so these
-- numbers are a proxy for the loop's scheduling lag (how late work starts).
with iterations as (
  select
    it.track_id,
    it.dur - ifnull((select sum(s.dur) from slice s where s.parent_id = it.id and s.name = 'select'), 0) as busy
  from slice it
  where it.name = 'loop iteration' and it.dur >= 0
),
ranked as (
  select
    track_id,
    busy,
    row_number() over (partition by track_id order by busy) as rnk,
    count(*) over (partition by track_id) as n
  from iterations
)
select
  p.pid,
  p.name as process,
  t.tid,
  t.name as thread,
  r.n as iterations,
  round(max(case when r.rnk = (r.n + 1) / 2 then r.busy end) / 1e6, 3) as p50_ms,
  round(max(case when r.rnk = (9 * r.n + 9) / 10 then r.busy end) / 1e6, 3) as p90_ms,
  round(max(case when r.rnk = (99 * r.n + 99) / 100 then r.busy end) / 1e6, 3) as p99_ms,
  round(max(r.busy) / 1e6, 3) as max_ms
from ranked r
join thread_track tt on tt.id = r.track_id
join thread t on t.utid = tt.utid
left join process p on p.upid = t.upid
group by r.track_id, r.n, p.pid, p.name, t.tid, t.name
order by max_ms desc;
