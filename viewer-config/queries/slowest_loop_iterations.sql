-- Slowest event-loop iterations (one `loop iteration` slice per
-- BaseEventLoop._run_once), slowest first, with what happened inside each:
-- time spent waiting in `select` and the callbacks that ran, slowest first.
-- The id/ts/dur/track_id columns make each row clickable in the UI.
select
  it.id,
  it.ts,
  it.dur,
  it.track_id,
  round(it.dur / 1e6, 3) as dur_ms,
  round(ifnull((select sum(s.dur) from slice s where s.parent_id = it.id and s.name = 'select'), 0) / 1e6, 3) as select_ms,
  (select group_concat(c.name || ' ' || printf('%.3f', c.dur / 1e6) || ' ms', ', ')
     from (select name, dur from slice where parent_id = it.id and name != 'select' order by dur desc) c) as callbacks,
  t.name as thread,
  t.tid,
  p.pid,
  p.name as process
from slice it
join thread_track tt on tt.id = it.track_id
join thread t on t.utid = tt.utid
left join process p on p.upid = t.upid
where it.name = 'loop iteration'
order by it.dur desc
limit 20;
