"""N worker processes behind one port (`server.workers`): the supervisor (supervisor.py), the
ports it takes (sockets.py), a worker (worker.py) and the group state the workers share
(group.py). With one worker none of it runs."""
