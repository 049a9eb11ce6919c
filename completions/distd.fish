# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_distd_global_optspecs
    string join \n h/help V/version
end

function __fish_distd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_distd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_distd_using_subcommand
    set -l cmd (__fish_distd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c distd -n "__fish_distd_needs_command" -s h -l help -d 'Print help'
complete -c distd -n "__fish_distd_needs_command" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_needs_command" -f -a "scheduler" -d 'Run the scheduler: the one process that knows the graph and the workers'
complete -c distd -n "__fish_distd_needs_command" -f -a "worker" -d 'Run workers that connect to a scheduler and run its tasks, under a nanny that restarts them (unless --no-nanny)'
complete -c distd -n "__fish_distd_needs_command" -f -a "nanny" -d 'Run a nanny: it starts workers as its children and supervises them (as `worker`)'
complete -c distd -n "__fish_distd_needs_command" -f -a "local" -d 'Run a scheduler and N workers in this process (a local cluster)'
complete -c distd -n "__fish_distd_needs_command" -f -a "ssh" -d 'Start a scheduler and nanny-supervised workers on a list of hosts over SSH'
complete -c distd -n "__fish_distd_needs_command" -f -a "submit" -d 'Run one command as a task on a cluster; print its output and exit with its status'
complete -c distd -n "__fish_distd_needs_command" -f -a "run" -d 'Run a graph file (TOML) on a cluster, or on a local cluster started for it'
complete -c distd -n "__fish_distd_needs_command" -f -a "info" -d 'Show a cluster\'s workers and task counts'
complete -c distd -n "__fish_distd_needs_command" -f -a "restart" -d 'Restart every nanny-supervised worker of a cluster; all tasks and results are dropped'
complete -c distd -n "__fish_distd_needs_command" -f -a "access" -d 'Make access files: a cluster\'s credential ahead of time, or a client-only copy'
complete -c distd -n "__fish_distd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand'
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l host -d 'Interface to listen on (0.0.0.0 for all)' -r
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l port -d 'Port to listen on (0 picks a free one)' -r
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l scheduler-file -d 'Write the scheduler\'s address to this JSON file (removed on a clean exit)' -r -F
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l pid-file -d 'Write the scheduler\'s process id to this file' -r -F
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l idle-timeout -d 'Exit after this long with no client and no task (e.g. 30s, 5m)' -r
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l allowed-failures -d 'A task errs as "killed worker" after this many workers died running it' -r
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l heartbeat-timeout -d 'A worker silent for this long is considered lost' -r
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l worker-queue -d 'Tasks queued on a worker per thread, beyond the running ones' -r
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l access-file -d 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster\'s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise' -r -F
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l tls-ca-file -d 'Your organisation\'s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential' -r -F
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l tls-cert -d 'This process\'s certificate (PEM, signed by --tls-ca-file; servers\' name their host)' -r -F
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l tls-key -d 'The key of --tls-cert (PEM, mode 0600)' -r -F
complete -c distd -n "__fish_distd_using_subcommand scheduler" -l no-security -d 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it'
complete -c distd -n "__fish_distd_using_subcommand scheduler" -s h -l help -d 'Print help'
complete -c distd -n "__fish_distd_using_subcommand scheduler" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand worker" -l scheduler-file -d 'Read the scheduler\'s address and credential from this file (written by `distd scheduler --scheduler-file`)' -r -F
complete -c distd -n "__fish_distd_using_subcommand worker" -l nthreads -d 'Tasks run at once per worker (default and 0: the number of cores / nworkers)' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l nworkers -d 'Worker processes to start (each supervised by the nanny): a number, -1 for one per core, or auto to split the cores into workers and threads as dask does' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l memory-limit -d 'Memory per worker: auto, 0 (none), a fraction (0.5, 1), a percentage (80%) or a size (4GiB); see --help' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l shutdown-timeout -d 'Grace period for a worker to stop before its nanny kills it' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l lifetime -d 'Retire each worker after this long (its results are moved to other workers first)' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l lifetime-stagger -d 'Spread retirements: each worker\'s lifetime varies by up to this much either way' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l crash-limit -d 'The nanny gives up on a crash loop: this many failures within a minute of a worker that died by itself seconds after it started (workers killed from outside or for memory are always restarted)' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l name -d 'The worker\'s name (default: HOST-PID)' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l resources -d 'Abstract resources, e.g. "GPU=2 MEM=8e9"' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l local-directory -d 'Folder for scratch files (default: ~/.cache/distd)' -r -F
complete -c distd -n "__fish_distd_using_subcommand worker" -l listen-address -d 'Address to listen on for peers, host:port (default: the interface that reaches the scheduler)' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l contact-address -d 'Address peers should use to reach this worker, host:port' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l death-timeout -d 'Give up after the scheduler is unreachable this long, at start or later; it covers the whole connect (resolving, connecting, the handshake, registering)' -r
complete -c distd -n "__fish_distd_using_subcommand worker" -l access-file -d 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster\'s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise' -r -F
complete -c distd -n "__fish_distd_using_subcommand worker" -l tls-ca-file -d 'Your organisation\'s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential' -r -F
complete -c distd -n "__fish_distd_using_subcommand worker" -l tls-cert -d 'This process\'s certificate (PEM, signed by --tls-ca-file; servers\' name their host)' -r -F
complete -c distd -n "__fish_distd_using_subcommand worker" -l tls-key -d 'The key of --tls-cert (PEM, mode 0600)' -r -F
complete -c distd -n "__fish_distd_using_subcommand worker" -l drain -d 'On SIGINT/SIGTERM, finish running tasks and hand results over before leaving'
complete -c distd -n "__fish_distd_using_subcommand worker" -l lifetime-restart -d 'Start a new worker after one retires (under a nanny)'
complete -c distd -n "__fish_distd_using_subcommand worker" -l no-nanny -d 'Run the worker in this process, without a nanny (one worker only)'
complete -c distd -n "__fish_distd_using_subcommand worker" -l no-security -d 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it'
complete -c distd -n "__fish_distd_using_subcommand worker" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c distd -n "__fish_distd_using_subcommand worker" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand nanny" -l scheduler-file -d 'Read the scheduler\'s address and credential from this file (written by `distd scheduler --scheduler-file`)' -r -F
complete -c distd -n "__fish_distd_using_subcommand nanny" -l nthreads -d 'Tasks run at once per worker (default and 0: the number of cores / nworkers)' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l nworkers -d 'Worker processes to start (each supervised by the nanny): a number, -1 for one per core, or auto to split the cores into workers and threads as dask does' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l memory-limit -d 'Memory per worker: auto, 0 (none), a fraction (0.5, 1), a percentage (80%) or a size (4GiB); see --help' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l shutdown-timeout -d 'Grace period for a worker to stop before its nanny kills it' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l lifetime -d 'Retire each worker after this long (its results are moved to other workers first)' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l lifetime-stagger -d 'Spread retirements: each worker\'s lifetime varies by up to this much either way' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l crash-limit -d 'The nanny gives up on a crash loop: this many failures within a minute of a worker that died by itself seconds after it started (workers killed from outside or for memory are always restarted)' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l name -d 'The worker\'s name (default: HOST-PID)' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l resources -d 'Abstract resources, e.g. "GPU=2 MEM=8e9"' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l local-directory -d 'Folder for scratch files (default: ~/.cache/distd)' -r -F
complete -c distd -n "__fish_distd_using_subcommand nanny" -l listen-address -d 'Address to listen on for peers, host:port (default: the interface that reaches the scheduler)' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l contact-address -d 'Address peers should use to reach this worker, host:port' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l death-timeout -d 'Give up after the scheduler is unreachable this long, at start or later; it covers the whole connect (resolving, connecting, the handshake, registering)' -r
complete -c distd -n "__fish_distd_using_subcommand nanny" -l access-file -d 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster\'s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise' -r -F
complete -c distd -n "__fish_distd_using_subcommand nanny" -l tls-ca-file -d 'Your organisation\'s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential' -r -F
complete -c distd -n "__fish_distd_using_subcommand nanny" -l tls-cert -d 'This process\'s certificate (PEM, signed by --tls-ca-file; servers\' name their host)' -r -F
complete -c distd -n "__fish_distd_using_subcommand nanny" -l tls-key -d 'The key of --tls-cert (PEM, mode 0600)' -r -F
complete -c distd -n "__fish_distd_using_subcommand nanny" -l drain -d 'On SIGINT/SIGTERM, finish running tasks and hand results over before leaving'
complete -c distd -n "__fish_distd_using_subcommand nanny" -l lifetime-restart -d 'Start a new worker after one retires (under a nanny)'
complete -c distd -n "__fish_distd_using_subcommand nanny" -l no-security -d 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it'
complete -c distd -n "__fish_distd_using_subcommand nanny" -l no-nanny -d 'Run the worker in this process, without a nanny (one worker only)'
complete -c distd -n "__fish_distd_using_subcommand nanny" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c distd -n "__fish_distd_using_subcommand nanny" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand local" -s n -l nworkers -d 'Number of workers (default and -1: the number of cores; auto: as `distd worker`)' -r
complete -c distd -n "__fish_distd_using_subcommand local" -l threads-per-worker -d 'Threads per worker (default: 1; with -n auto, chosen with the number of workers)' -r
complete -c distd -n "__fish_distd_using_subcommand local" -l host -d 'Interface the scheduler listens on' -r
complete -c distd -n "__fish_distd_using_subcommand local" -l port -d 'Scheduler port (0 picks a free one)' -r
complete -c distd -n "__fish_distd_using_subcommand local" -l local-directory -d 'Folder for the workers\' scratch files' -r -F
complete -c distd -n "__fish_distd_using_subcommand local" -l run -d 'Run this graph file on the cluster, then exit' -r -F
complete -c distd -n "__fish_distd_using_subcommand local" -l access-file -d 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster\'s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise' -r -F
complete -c distd -n "__fish_distd_using_subcommand local" -l tls-ca-file -d 'Your organisation\'s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential' -r -F
complete -c distd -n "__fish_distd_using_subcommand local" -l tls-cert -d 'This process\'s certificate (PEM, signed by --tls-ca-file; servers\' name their host)' -r -F
complete -c distd -n "__fish_distd_using_subcommand local" -l tls-key -d 'The key of --tls-cert (PEM, mode 0600)' -r -F
complete -c distd -n "__fish_distd_using_subcommand local" -l processes -d 'Run the workers as separate processes under a nanny, not as threads of this one'
complete -c distd -n "__fish_distd_using_subcommand local" -l no-progress -d 'With --run: never draw a progress bar'
complete -c distd -n "__fish_distd_using_subcommand local" -l wait-for-workers -d 'With --run: wait for a worker that can run a task that no worker can (a resource, a worker name), instead of failing at once'
complete -c distd -n "__fish_distd_using_subcommand local" -l no-security -d 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it'
complete -c distd -n "__fish_distd_using_subcommand local" -s h -l help -d 'Print help'
complete -c distd -n "__fish_distd_using_subcommand local" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand ssh" -l hostfile -d 'Read host patterns from this file (one per line, # comments)' -r -F
complete -c distd -n "__fish_distd_using_subcommand ssh" -l scheduler -d 'Host of the scheduler (default: the first host)' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l scheduler-port -d 'Scheduler port (0 picks a free one)' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l nthreads -d 'Threads per worker (default: the remote cores / nworkers)' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l nworkers -d 'Worker processes per host' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l memory-limit -d 'Memory per worker (as `distd worker --memory-limit`; see --help)' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l ssh-username -d 'User name for SSH' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l ssh-port -d 'SSH port' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l ssh-private-key -d 'SSH private key' -r -F
complete -c distd -n "__fish_distd_using_subcommand ssh" -l ssh-config -d 'An ssh configuration file to use instead of ~/.ssh/config (ssh -F)' -r -F
complete -c distd -n "__fish_distd_using_subcommand ssh" -l remote-distd -d 'The distd to run on the hosts (its version must equal this one\'s)' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l remote-dir -d 'With --upload: where the binary goes on each host (relative to the remote home)' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l local-directory -d 'Scratch folder of the workers on each host' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l log-directory -d 'Also write every remote process\'s output to files in this local folder' -r -F
complete -c distd -n "__fish_distd_using_subcommand ssh" -l connect-timeout -d 'Give up on a host that does not answer within this long' -r
complete -c distd -n "__fish_distd_using_subcommand ssh" -l access-file -d 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster\'s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise' -r -F
complete -c distd -n "__fish_distd_using_subcommand ssh" -l tls-ca-file -d 'Your organisation\'s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential' -r -F
complete -c distd -n "__fish_distd_using_subcommand ssh" -l tls-cert -d 'This process\'s certificate (PEM, signed by --tls-ca-file; servers\' name their host)' -r -F
complete -c distd -n "__fish_distd_using_subcommand ssh" -l tls-key -d 'The key of --tls-cert (PEM, mode 0600)' -r -F
complete -c distd -n "__fish_distd_using_subcommand ssh" -l upload -d 'Copy this distd binary to each host (checksummed; reused when already there)'
complete -c distd -n "__fish_distd_using_subcommand ssh" -l no-security -d 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it'
complete -c distd -n "__fish_distd_using_subcommand ssh" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c distd -n "__fish_distd_using_subcommand ssh" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand submit" -l scheduler-file -d 'Read the scheduler\'s address and credential from this file (written by `distd scheduler --scheduler-file`)' -r -F
complete -c distd -n "__fish_distd_using_subcommand submit" -l key -d 'The task\'s key (default: a unique one)' -r
complete -c distd -n "__fish_distd_using_subcommand submit" -l timeout -d 'Kill the command after this long' -r
complete -c distd -n "__fish_distd_using_subcommand submit" -l cwd -d 'Working directory of the command on the worker' -r
complete -c distd -n "__fish_distd_using_subcommand submit" -l env -d 'Extra environment variable for the command, NAME=VALUE (repeatable)' -r
complete -c distd -n "__fish_distd_using_subcommand submit" -l access-file -d 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster\'s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise' -r -F
complete -c distd -n "__fish_distd_using_subcommand submit" -l tls-ca-file -d 'Your organisation\'s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential' -r -F
complete -c distd -n "__fish_distd_using_subcommand submit" -l tls-cert -d 'This process\'s certificate (PEM, signed by --tls-ca-file; servers\' name their host)' -r -F
complete -c distd -n "__fish_distd_using_subcommand submit" -l tls-key -d 'The key of --tls-cert (PEM, mode 0600)' -r -F
complete -c distd -n "__fish_distd_using_subcommand submit" -s n -l no-stdin -d 'Do not read stdin: the command\'s stdin is /dev/null (as with `ssh -n`)'
complete -c distd -n "__fish_distd_using_subcommand submit" -l no-security -d 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it'
complete -c distd -n "__fish_distd_using_subcommand submit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c distd -n "__fish_distd_using_subcommand submit" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand run" -l scheduler -d 'Run on this cluster instead of starting a local one' -r
complete -c distd -n "__fish_distd_using_subcommand run" -l scheduler-file -d 'Run on the cluster whose scheduler wrote this file (`distd scheduler --scheduler-file`); it also carries the credential' -r -F
complete -c distd -n "__fish_distd_using_subcommand run" -s n -l nworkers -d 'Workers of the local cluster (default and -1: the number of cores; auto: as `distd worker`)' -r
complete -c distd -n "__fish_distd_using_subcommand run" -l threads-per-worker -d 'Threads per worker (default: 1; with -n auto, chosen with the number of workers)' -r
complete -c distd -n "__fish_distd_using_subcommand run" -l access-file -d 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster\'s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise' -r -F
complete -c distd -n "__fish_distd_using_subcommand run" -l tls-ca-file -d 'Your organisation\'s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential' -r -F
complete -c distd -n "__fish_distd_using_subcommand run" -l tls-cert -d 'This process\'s certificate (PEM, signed by --tls-ca-file; servers\' name their host)' -r -F
complete -c distd -n "__fish_distd_using_subcommand run" -l tls-key -d 'The key of --tls-cert (PEM, mode 0600)' -r -F
complete -c distd -n "__fish_distd_using_subcommand run" -l no-progress -d 'Never draw a progress bar'
complete -c distd -n "__fish_distd_using_subcommand run" -l wait-for-workers -d 'Wait for a worker that can run a task that no connected worker can (a resource, a worker name), instead of failing at once naming the task and what it needs'
complete -c distd -n "__fish_distd_using_subcommand run" -l no-security -d 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it'
complete -c distd -n "__fish_distd_using_subcommand run" -s h -l help -d 'Print help'
complete -c distd -n "__fish_distd_using_subcommand run" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand info" -l scheduler-file -d 'Read the scheduler\'s address and credential from this file (written by `distd scheduler --scheduler-file`)' -r -F
complete -c distd -n "__fish_distd_using_subcommand info" -l access-file -d 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster\'s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise' -r -F
complete -c distd -n "__fish_distd_using_subcommand info" -l tls-ca-file -d 'Your organisation\'s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential' -r -F
complete -c distd -n "__fish_distd_using_subcommand info" -l tls-cert -d 'This process\'s certificate (PEM, signed by --tls-ca-file; servers\' name their host)' -r -F
complete -c distd -n "__fish_distd_using_subcommand info" -l tls-key -d 'The key of --tls-cert (PEM, mode 0600)' -r -F
complete -c distd -n "__fish_distd_using_subcommand info" -l json -d 'Print JSON instead of a table'
complete -c distd -n "__fish_distd_using_subcommand info" -l no-security -d 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it'
complete -c distd -n "__fish_distd_using_subcommand info" -s h -l help -d 'Print help'
complete -c distd -n "__fish_distd_using_subcommand info" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand restart" -l scheduler-file -d 'Read the scheduler\'s address and credential from this file (written by `distd scheduler --scheduler-file`)' -r -F
complete -c distd -n "__fish_distd_using_subcommand restart" -l access-file -d 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster\'s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise' -r -F
complete -c distd -n "__fish_distd_using_subcommand restart" -l tls-ca-file -d 'Your organisation\'s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential' -r -F
complete -c distd -n "__fish_distd_using_subcommand restart" -l tls-cert -d 'This process\'s certificate (PEM, signed by --tls-ca-file; servers\' name their host)' -r -F
complete -c distd -n "__fish_distd_using_subcommand restart" -l tls-key -d 'The key of --tls-cert (PEM, mode 0600)' -r -F
complete -c distd -n "__fish_distd_using_subcommand restart" -l no-security -d 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it'
complete -c distd -n "__fish_distd_using_subcommand restart" -s h -l help -d 'Print help'
complete -c distd -n "__fish_distd_using_subcommand restart" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand access; and not __fish_seen_subcommand_from generate client-file" -s h -l help -d 'Print help'
complete -c distd -n "__fish_distd_using_subcommand access; and not __fish_seen_subcommand_from generate client-file" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand access; and not __fish_seen_subcommand_from generate client-file" -f -a "generate" -d 'Make a new cluster credential in FILE (mode 0600), for `distd scheduler --access-file FILE` and its workers and clients on hosts without a shared home'
complete -c distd -n "__fish_distd_using_subcommand access; and not __fish_seen_subcommand_from generate client-file" -f -a "client-file" -d 'Copy an access file without its member part: for users who may submit but not add workers'
complete -c distd -n "__fish_distd_using_subcommand access; and __fish_seen_subcommand_from generate" -l client-only -d 'Leave out the member part: the file can submit, but not join as a worker'
complete -c distd -n "__fish_distd_using_subcommand access; and __fish_seen_subcommand_from generate" -s h -l help -d 'Print help'
complete -c distd -n "__fish_distd_using_subcommand access; and __fish_seen_subcommand_from generate" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand access; and __fish_seen_subcommand_from client-file" -s h -l help -d 'Print help'
complete -c distd -n "__fish_distd_using_subcommand access; and __fish_seen_subcommand_from client-file" -s V -l version -d 'Print version'
complete -c distd -n "__fish_distd_using_subcommand help" -s h -l help -d 'Print help'
complete -c distd -n "__fish_distd_using_subcommand help" -s V -l version -d 'Print version'
