-- Tasks grouped by coroutine: how many, their running and waiting time, and
-- how they ended. One row per task carries these args: its lifetime slice,
-- or, for a task that never had a lane, its last run slice.
select
  c.string_value as coroutine,
  count(*) as tasks,
  round(sum(r.real_value), 3) as running_ms,
  round(sum(w.real_value), 3) as waiting_ms,
  round(avg(r.real_value), 3) as avg_running_ms,
  sum(o.string_value = 'exception') as exceptions,
  sum(o.string_value = 'cancelled') as cancelled,
  sum(o.string_value = 'pending') as still_pending
from slice s
join args c on c.arg_set_id = s.arg_set_id and c.key = 'debug.coroutine'
join args o on o.arg_set_id = s.arg_set_id and o.key = 'debug.outcome'
left join args r on r.arg_set_id = s.arg_set_id and r.key = 'debug.running_ms'
left join args w on w.arg_set_id = s.arg_set_id and w.key = 'debug.waiting_ms'
group by c.string_value
order by sum(r.real_value) + sum(w.real_value) desc;
