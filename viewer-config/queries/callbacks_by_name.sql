-- Callbacks (the slices directly inside a `loop iteration`, other than
-- `select`) grouped by name: how often each ran and how long it took.
-- Percentiles are nearest-rank (the value at rank ceil(p * count)).
with callbacks as (
  select c.name, c.dur
  from slice c
  join slice it on it.id = c.parent_id
  where it.name = 'loop iteration' and c.name != 'select' and c.dur >= 0
),
ranked as (
  select
    name,
    dur,
    row_number() over (partition by name order by dur) as rnk,
    count(*) over (partition by name) as n
  from callbacks
)
select
  name as callback,
  n as calls,
  round(sum(dur) / 1e6, 3) as total_ms,
  round(avg(dur) / 1e6, 3) as avg_ms,
  round(max(case when rnk = (n + 1) / 2 then dur end) / 1e6, 3) as p50_ms,
  round(max(case when rnk = (9 * n + 9) / 10 then dur end) / 1e6, 3) as p90_ms,
  round(max(dur) / 1e6, 3) as max_ms
from ranked
group by name, n
order by sum(dur) desc;
