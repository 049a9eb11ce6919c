
use builtin;
use str;

set edit:completion:arg-completer[distd] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'distd'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'distd'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand scheduler 'Run the scheduler: the one process that knows the graph and the workers'
            cand worker 'Run workers that connect to a scheduler and run its tasks, under a nanny that restarts them (unless --no-nanny)'
            cand nanny 'Run a nanny: it starts workers as its children and supervises them (as `worker`)'
            cand local 'Run a scheduler and N workers in this process (a local cluster)'
            cand ssh 'Start a scheduler and nanny-supervised workers on a list of hosts over SSH'
            cand submit 'Run one command as a task on a cluster; print its output and exit with its status'
            cand run 'Run a graph file (TOML) on a cluster, or on a local cluster started for it'
            cand info 'Show a cluster''s workers and task counts'
            cand restart 'Restart every nanny-supervised worker of a cluster; all tasks and results are dropped'
            cand help 'Print this message or the help of the given subcommand'
        }
        &'distd;scheduler'= {
            cand --host 'Interface to listen on (0.0.0.0 for all)'
            cand --port 'Port to listen on (0 picks a free one)'
            cand --scheduler-file 'Write the scheduler''s address to this JSON file (removed on a clean exit)'
            cand --pid-file 'Write the scheduler''s process id to this file'
            cand --idle-timeout 'Exit after this long with no client and no task (e.g. 30s, 5m)'
            cand --allowed-failures 'A task errs as "killed worker" after this many workers died running it'
            cand --heartbeat-timeout 'A worker silent for this long is considered lost'
            cand --worker-queue 'Tasks queued on a worker per thread, beyond the running ones'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'distd;worker'= {
            cand --scheduler-file 'Read the scheduler''s address from this file (written by `distd scheduler --scheduler-file`)'
            cand --nthreads 'Tasks run at once per worker (default and 0: the number of cores / nworkers)'
            cand --nworkers 'Worker processes to start (each supervised by the nanny): a number, -1 for one per core, or auto to split the cores into workers and threads as dask does'
            cand --memory-limit 'Memory per worker: auto, 0 (none), a fraction (0.5, 1), a percentage (80%) or a size (4GiB); see --help'
            cand --shutdown-timeout 'Grace period for a worker to stop before its nanny kills it'
            cand --lifetime 'Retire each worker after this long (its results are moved to other workers first)'
            cand --lifetime-stagger 'Spread retirements: each worker''s lifetime varies by up to this much either way'
            cand --crash-limit 'The nanny gives up on a crash loop: this many failures within a minute of a worker that died by itself seconds after it started (workers killed from outside or for memory are always restarted)'
            cand --name 'The worker''s name (default: HOST-PID)'
            cand --resources 'Abstract resources, e.g. "GPU=2 MEM=8e9"'
            cand --local-directory 'Folder for scratch files (default: ~/.cache/distd)'
            cand --listen-address 'Address to listen on for peers, host:port (default: the interface that reaches the scheduler)'
            cand --contact-address 'Address peers should use to reach this worker, host:port'
            cand --death-timeout 'Give up after the scheduler is unreachable this long, at start or later; it covers the whole connect (resolving, connecting, the handshake, registering)'
            cand --drain 'On SIGINT/SIGTERM, finish running tasks and hand results over before leaving'
            cand --lifetime-restart 'Start a new worker after one retires (under a nanny)'
            cand --no-nanny 'Run the worker in this process, without a nanny (one worker only)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'distd;nanny'= {
            cand --scheduler-file 'Read the scheduler''s address from this file (written by `distd scheduler --scheduler-file`)'
            cand --nthreads 'Tasks run at once per worker (default and 0: the number of cores / nworkers)'
            cand --nworkers 'Worker processes to start (each supervised by the nanny): a number, -1 for one per core, or auto to split the cores into workers and threads as dask does'
            cand --memory-limit 'Memory per worker: auto, 0 (none), a fraction (0.5, 1), a percentage (80%) or a size (4GiB); see --help'
            cand --shutdown-timeout 'Grace period for a worker to stop before its nanny kills it'
            cand --lifetime 'Retire each worker after this long (its results are moved to other workers first)'
            cand --lifetime-stagger 'Spread retirements: each worker''s lifetime varies by up to this much either way'
            cand --crash-limit 'The nanny gives up on a crash loop: this many failures within a minute of a worker that died by itself seconds after it started (workers killed from outside or for memory are always restarted)'
            cand --name 'The worker''s name (default: HOST-PID)'
            cand --resources 'Abstract resources, e.g. "GPU=2 MEM=8e9"'
            cand --local-directory 'Folder for scratch files (default: ~/.cache/distd)'
            cand --listen-address 'Address to listen on for peers, host:port (default: the interface that reaches the scheduler)'
            cand --contact-address 'Address peers should use to reach this worker, host:port'
            cand --death-timeout 'Give up after the scheduler is unreachable this long, at start or later; it covers the whole connect (resolving, connecting, the handshake, registering)'
            cand --drain 'On SIGINT/SIGTERM, finish running tasks and hand results over before leaving'
            cand --lifetime-restart 'Start a new worker after one retires (under a nanny)'
            cand --no-nanny 'Run the worker in this process, without a nanny (one worker only)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'distd;local'= {
            cand -n 'Number of workers (default and -1: the number of cores; auto: as `distd worker`)'
            cand --nworkers 'Number of workers (default and -1: the number of cores; auto: as `distd worker`)'
            cand --threads-per-worker 'Threads per worker (default: 1; with -n auto, chosen with the number of workers)'
            cand --host 'Interface the scheduler listens on'
            cand --port 'Scheduler port (0 picks a free one)'
            cand --local-directory 'Folder for the workers'' scratch files'
            cand --run 'Run this graph file on the cluster, then exit'
            cand --processes 'Run the workers as separate processes under a nanny, not as threads of this one'
            cand --no-progress 'With --run: never draw a progress bar'
            cand --wait-for-workers 'With --run: wait for a worker that can run a task that no worker can (a resource, a worker name), instead of failing at once'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'distd;ssh'= {
            cand --hostfile 'Read host patterns from this file (one per line, # comments)'
            cand --scheduler 'Host of the scheduler (default: the first host)'
            cand --scheduler-port 'Scheduler port (0 picks a free one)'
            cand --nthreads 'Threads per worker (default: the remote cores / nworkers)'
            cand --nworkers 'Worker processes per host'
            cand --memory-limit 'Memory per worker (as `distd worker --memory-limit`; see --help)'
            cand --ssh-username 'User name for SSH'
            cand --ssh-port 'SSH port'
            cand --ssh-private-key 'SSH private key'
            cand --ssh-config 'An ssh configuration file to use instead of ~/.ssh/config (ssh -F)'
            cand --remote-distd 'The distd to run on the hosts (its version must equal this one''s)'
            cand --remote-dir 'With --upload: where the binary goes on each host (relative to the remote home)'
            cand --local-directory 'Scratch folder of the workers on each host'
            cand --log-directory 'Also write every remote process''s output to files in this local folder'
            cand --connect-timeout 'Give up on a host that does not answer within this long'
            cand --upload 'Copy this distd binary to each host (checksummed; reused when already there)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'distd;submit'= {
            cand --key 'The task''s key (default: a unique one)'
            cand --timeout 'Kill the command after this long'
            cand --cwd 'Working directory of the command on the worker'
            cand --env 'Extra environment variable for the command, NAME=VALUE (repeatable)'
            cand -n 'Do not read stdin: the command''s stdin is /dev/null (as with `ssh -n`)'
            cand --no-stdin 'Do not read stdin: the command''s stdin is /dev/null (as with `ssh -n`)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'distd;run'= {
            cand --scheduler 'Run on this cluster instead of starting a local one'
            cand -n 'Workers of the local cluster (default and -1: the number of cores; auto: as `distd worker`)'
            cand --nworkers 'Workers of the local cluster (default and -1: the number of cores; auto: as `distd worker`)'
            cand --threads-per-worker 'Threads per worker (default: 1; with -n auto, chosen with the number of workers)'
            cand --no-progress 'Never draw a progress bar'
            cand --wait-for-workers 'Wait for a worker that can run a task that no connected worker can (a resource, a worker name), instead of failing at once naming the task and what it needs'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'distd;info'= {
            cand --json 'Print JSON instead of a table'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'distd;restart'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'distd;help'= {
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
    ]
    $completions[$command]
}
