-- Where tasks wait: await slices grouped by what was awaited and the user-code
-- line that awaited it, most total waiting first. Many waits on one
-- Semaphore.acquire()/Lock.acquire()/Queue.get() line is contention; long
-- asyncio.sleep() or Future waits back to back in one task are sequential
-- awaits that could run concurrently.
select
  a.name as awaited,
  at.string_value as awaited_at,
  count(*) as waits,
  round(sum(a.dur) / 1e6, 3) as total_ms,
  round(avg(a.dur) / 1e6, 3) as avg_ms,
  round(max(a.dur) / 1e6, 3) as max_ms
from slice a
left join args at on at.arg_set_id = a.arg_set_id and at.key = 'debug.awaited_at'
where a.name like 'await %'
group by a.name, at.string_value
order by sum(a.dur) desc
limit 50;
