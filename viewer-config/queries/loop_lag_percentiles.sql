-- Loop lag per loop: percentiles of astrace's `loop lag` counter, which holds,
-- for every loop iteration, the longest delay between a callback becoming
-- ready (call_soon, a timer falling due, a task woken) and starting to run.
-- A high p99 with a low p50 is the loop being blocked now and then (look for
-- slow callbacks); a high p50 is a loop that is always behind.
with lag as (
  select c.track_id, c.value,
         row_number() over (partition by c.track_id order by c.value) as rn,
         count(*) over (partition by c.track_id) as n
  from counter c
  join counter_track ct on ct.id = c.track_id
  where ct.name = 'loop lag'
)
select
  track_id,
  max(n) as iterations,
  round(max(case when rn = (n + 1) / 2 then value end) / 1e6, 3) as p50_ms,
  round(max(case when rn = (n * 90 + 99) / 100 then value end) / 1e6, 3) as p90_ms,
  round(max(case when rn = (n * 99 + 99) / 100 then value end) / 1e6, 3) as p99_ms,
  round(max(value) / 1e6, 3) as max_ms
from lag
group by track_id
order by max(value) desc;
