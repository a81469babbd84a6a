-- What astrace recorded about the session and each process: the arguments
-- of its `astrace: ...` instants (version, command, settings, Python
-- version, how each process ended, event and drop counts). Trace processor
-- stores these debug annotations in `args` under keys like
-- `debug.events_dropped`.
select
  s.name as event,
  s.ts,
  p.pid,
  replace(a.key, 'debug.', '') as arg,
  a.display_value as value
from slice s
join args a on a.arg_set_id = s.arg_set_id
left join process_track pt on pt.id = s.track_id
left join process p on p.upid = pt.upid
where s.name in ('astrace: session', 'astrace: summary', 'astrace: process', 'astrace: process end')
order by s.ts, p.pid, s.name, arg;
