-- Slowest task steps: each time a task's coroutine ran, as the loop thread's
-- `step <task> <coroutine>` callback slice, longest first, with the loop
-- iteration it stretched. A step this long is the loop blocked: look at the
-- task's code at that point (and, with the sampler, its stack samples).
select
  s.id,
  s.ts,
  s.dur,
  s.track_id,
  round(s.dur / 1e6, 3) as dur_ms,
  substr(s.name, 6) as task,
  round(it.dur / 1e6, 3) as loop_iteration_ms,
  t.name as thread,
  p.pid
from slice s
join thread_track tt on tt.id = s.track_id
join thread t on t.utid = tt.utid
left join process p on p.upid = t.upid
left join slice it on it.id = s.parent_id and it.name = 'loop iteration'
where s.name like 'step %'
order by s.dur desc
limit 20;
