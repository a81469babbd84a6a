-- Callbacks that held the loop for more than 100 ms (asyncio's own
-- slow_callback_duration default in debug mode), slowest first. While one
-- runs, nothing else on that loop can: every other task waits.
-- The id/ts/dur/track_id columns make each row clickable in the UI.
select
  c.id,
  c.ts,
  c.dur,
  c.track_id,
  c.name as callback,
  round(c.dur / 1e6, 3) as dur_ms,
  t.name as thread,
  t.tid,
  p.pid,
  p.name as process
from slice c
join slice it on it.id = c.parent_id
join thread_track tt on tt.id = c.track_id
join thread t on t.utid = tt.utid
left join process p on p.upid = t.upid
where it.name = 'loop iteration'
  and c.name != 'select'
  and c.dur > 100 * 1000 * 1000
order by c.dur desc;
