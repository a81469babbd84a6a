-- Tasks alive over time, per loop: astrace's `live tasks` counter (tasks
-- created and not yet done, exact, sampled at every loop iteration), reduced
-- to its peak and when it was reached, plus the last value (tasks still
-- pending when recording ended). For the curve itself, look at the counter
-- track under the loop thread.
select
  c.track_id,
  count(*) as samples,
  max(c.value) as peak,
  (select c2.ts from counter c2 where c2.track_id = c.track_id order by c2.value desc, c2.ts limit 1) as peak_ts,
  (select c3.value from counter c3 where c3.track_id = c.track_id order by c3.ts desc limit 1) as last
from counter c
join counter_track ct on ct.id = c.track_id
where ct.name = 'live tasks'
group by c.track_id
order by peak desc;
