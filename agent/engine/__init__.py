"""The episode engine: the episode rule (episode.py), the hosts environments live on
(hosts.py: threads, worker processes; ray_host.py: Ray actors; workers.py: process workers),
and the policy service that batches or fans out model requests (policy_service.py)."""
