-- Hottest functions in slow task steps: the stack samples taken on a loop
-- thread while a task step (its `step <task> <coroutine>` callback) ran for
-- 100 ms or more, counted per frame: `self` = samples with that frame
-- innermost (where the time went), `total` = samples with it anywhere on the
-- stack. A step that blocked in time.sleep shows `time.sleep` on top; one
-- that burned CPU shows the Python function doing it.
with recursive
slow_steps as (
  select s.id, s.ts, s.dur, tt.utid, substr(s.name, 6) as task
  from slice s
  join thread_track tt on tt.id = s.track_id
  where s.name like 'step %' and s.dur >= 100000000
),
step_samples as (
  select ps.id as sample_id, ps.callsite_id, st.task
  from perf_sample ps
  join slow_steps st on ps.utid = st.utid and ps.ts >= st.ts and ps.ts < st.ts + st.dur
),
on_stack(sample_id, callsite_id, innermost, task) as (
  select sample_id, callsite_id, 1, task from step_samples
  union all
  select o.sample_id, c.parent_id, 0, o.task
  from on_stack o
  join stack_profile_callsite c on c.id = o.callsite_id
  where c.parent_id is not null
)
select
  f.name as function,
  sum(o.innermost) as self,
  count(distinct o.sample_id) as total,
  round(100.0 * sum(o.innermost) / (select count(*) from step_samples), 1) as self_pct,
  group_concat(distinct o.task) as steps
from on_stack o
join stack_profile_callsite c on c.id = o.callsite_id
join stack_profile_frame f on f.id = c.frame_id
group by f.id
order by self desc, total desc
limit 30;
