
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'distd' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'distd'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'distd' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('scheduler', 'scheduler', [CompletionResultType]::ParameterValue, 'Run the scheduler: the one process that knows the graph and the workers')
            [CompletionResult]::new('worker', 'worker', [CompletionResultType]::ParameterValue, 'Run workers that connect to a scheduler and run its tasks, under a nanny that restarts them (unless --no-nanny)')
            [CompletionResult]::new('nanny', 'nanny', [CompletionResultType]::ParameterValue, 'Run a nanny: it starts workers as its children and supervises them (as `worker`)')
            [CompletionResult]::new('local', 'local', [CompletionResultType]::ParameterValue, 'Run a scheduler and N workers in this process (a local cluster)')
            [CompletionResult]::new('ssh', 'ssh', [CompletionResultType]::ParameterValue, 'Start a scheduler and nanny-supervised workers on a list of hosts over SSH')
            [CompletionResult]::new('submit', 'submit', [CompletionResultType]::ParameterValue, 'Run one command as a task on a cluster; print its output and exit with its status')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run a graph file (TOML) on a cluster, or on a local cluster started for it')
            [CompletionResult]::new('info', 'info', [CompletionResultType]::ParameterValue, 'Show a cluster''s workers and task counts')
            [CompletionResult]::new('restart', 'restart', [CompletionResultType]::ParameterValue, 'Restart every nanny-supervised worker of a cluster; all tasks and results are dropped')
            [CompletionResult]::new('access', 'access', [CompletionResultType]::ParameterValue, 'Make access files: a cluster''s credential ahead of time, or a client-only copy')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand')
            break
        }
        'distd;scheduler' {
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'Interface to listen on (0.0.0.0 for all)')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port to listen on (0 picks a free one)')
            [CompletionResult]::new('--scheduler-file', '--scheduler-file', [CompletionResultType]::ParameterName, 'Write the scheduler''s address to this JSON file (removed on a clean exit)')
            [CompletionResult]::new('--pid-file', '--pid-file', [CompletionResultType]::ParameterName, 'Write the scheduler''s process id to this file')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Exit after this long with no client and no task (e.g. 30s, 5m)')
            [CompletionResult]::new('--allowed-failures', '--allowed-failures', [CompletionResultType]::ParameterName, 'A task errs as "killed worker" after this many workers died running it')
            [CompletionResult]::new('--heartbeat-timeout', '--heartbeat-timeout', [CompletionResultType]::ParameterName, 'A worker silent for this long is considered lost')
            [CompletionResult]::new('--worker-queue', '--worker-queue', [CompletionResultType]::ParameterName, 'Tasks queued on a worker per thread, beyond the running ones')
            [CompletionResult]::new('--access-file', '--access-file', [CompletionResultType]::ParameterName, 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster''s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise')
            [CompletionResult]::new('--tls-ca-file', '--tls-ca-file', [CompletionResultType]::ParameterName, 'Your organisation''s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'This process''s certificate (PEM, signed by --tls-ca-file; servers'' name their host)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The key of --tls-cert (PEM, mode 0600)')
            [CompletionResult]::new('--no-security', '--no-security', [CompletionResultType]::ParameterName, 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;worker' {
            [CompletionResult]::new('--scheduler-file', '--scheduler-file', [CompletionResultType]::ParameterName, 'Read the scheduler''s address and credential from this file (written by `distd scheduler --scheduler-file`)')
            [CompletionResult]::new('--nthreads', '--nthreads', [CompletionResultType]::ParameterName, 'Tasks run at once per worker (default and 0: the number of cores / nworkers)')
            [CompletionResult]::new('--nworkers', '--nworkers', [CompletionResultType]::ParameterName, 'Worker processes to start (each supervised by the nanny): a number, -1 for one per core, or auto to split the cores into workers and threads as dask does')
            [CompletionResult]::new('--memory-limit', '--memory-limit', [CompletionResultType]::ParameterName, 'Memory per worker: auto, 0 (none), a fraction (0.5, 1), a percentage (80%) or a size (4GiB); see --help')
            [CompletionResult]::new('--shutdown-timeout', '--shutdown-timeout', [CompletionResultType]::ParameterName, 'Grace period for a worker to stop before its nanny kills it')
            [CompletionResult]::new('--lifetime', '--lifetime', [CompletionResultType]::ParameterName, 'Retire each worker after this long (its results are moved to other workers first)')
            [CompletionResult]::new('--lifetime-stagger', '--lifetime-stagger', [CompletionResultType]::ParameterName, 'Spread retirements: each worker''s lifetime varies by up to this much either way')
            [CompletionResult]::new('--crash-limit', '--crash-limit', [CompletionResultType]::ParameterName, 'The nanny gives up on a crash loop: this many failures within a minute of a worker that died by itself seconds after it started (workers killed from outside or for memory are always restarted)')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The worker''s name (default: HOST-PID)')
            [CompletionResult]::new('--resources', '--resources', [CompletionResultType]::ParameterName, 'Abstract resources, e.g. "GPU=2 MEM=8e9"')
            [CompletionResult]::new('--local-directory', '--local-directory', [CompletionResultType]::ParameterName, 'Folder for scratch files (default: ~/.cache/distd)')
            [CompletionResult]::new('--listen-address', '--listen-address', [CompletionResultType]::ParameterName, 'Address to listen on for peers, host:port (default: the interface that reaches the scheduler)')
            [CompletionResult]::new('--contact-address', '--contact-address', [CompletionResultType]::ParameterName, 'Address peers should use to reach this worker, host:port')
            [CompletionResult]::new('--death-timeout', '--death-timeout', [CompletionResultType]::ParameterName, 'Give up after the scheduler is unreachable this long, at start or later; it covers the whole connect (resolving, connecting, the handshake, registering)')
            [CompletionResult]::new('--access-file', '--access-file', [CompletionResultType]::ParameterName, 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster''s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise')
            [CompletionResult]::new('--tls-ca-file', '--tls-ca-file', [CompletionResultType]::ParameterName, 'Your organisation''s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'This process''s certificate (PEM, signed by --tls-ca-file; servers'' name their host)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The key of --tls-cert (PEM, mode 0600)')
            [CompletionResult]::new('--drain', '--drain', [CompletionResultType]::ParameterName, 'On SIGINT/SIGTERM, finish running tasks and hand results over before leaving')
            [CompletionResult]::new('--lifetime-restart', '--lifetime-restart', [CompletionResultType]::ParameterName, 'Start a new worker after one retires (under a nanny)')
            [CompletionResult]::new('--no-nanny', '--no-nanny', [CompletionResultType]::ParameterName, 'Run the worker in this process, without a nanny (one worker only)')
            [CompletionResult]::new('--no-security', '--no-security', [CompletionResultType]::ParameterName, 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;nanny' {
            [CompletionResult]::new('--scheduler-file', '--scheduler-file', [CompletionResultType]::ParameterName, 'Read the scheduler''s address and credential from this file (written by `distd scheduler --scheduler-file`)')
            [CompletionResult]::new('--nthreads', '--nthreads', [CompletionResultType]::ParameterName, 'Tasks run at once per worker (default and 0: the number of cores / nworkers)')
            [CompletionResult]::new('--nworkers', '--nworkers', [CompletionResultType]::ParameterName, 'Worker processes to start (each supervised by the nanny): a number, -1 for one per core, or auto to split the cores into workers and threads as dask does')
            [CompletionResult]::new('--memory-limit', '--memory-limit', [CompletionResultType]::ParameterName, 'Memory per worker: auto, 0 (none), a fraction (0.5, 1), a percentage (80%) or a size (4GiB); see --help')
            [CompletionResult]::new('--shutdown-timeout', '--shutdown-timeout', [CompletionResultType]::ParameterName, 'Grace period for a worker to stop before its nanny kills it')
            [CompletionResult]::new('--lifetime', '--lifetime', [CompletionResultType]::ParameterName, 'Retire each worker after this long (its results are moved to other workers first)')
            [CompletionResult]::new('--lifetime-stagger', '--lifetime-stagger', [CompletionResultType]::ParameterName, 'Spread retirements: each worker''s lifetime varies by up to this much either way')
            [CompletionResult]::new('--crash-limit', '--crash-limit', [CompletionResultType]::ParameterName, 'The nanny gives up on a crash loop: this many failures within a minute of a worker that died by itself seconds after it started (workers killed from outside or for memory are always restarted)')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The worker''s name (default: HOST-PID)')
            [CompletionResult]::new('--resources', '--resources', [CompletionResultType]::ParameterName, 'Abstract resources, e.g. "GPU=2 MEM=8e9"')
            [CompletionResult]::new('--local-directory', '--local-directory', [CompletionResultType]::ParameterName, 'Folder for scratch files (default: ~/.cache/distd)')
            [CompletionResult]::new('--listen-address', '--listen-address', [CompletionResultType]::ParameterName, 'Address to listen on for peers, host:port (default: the interface that reaches the scheduler)')
            [CompletionResult]::new('--contact-address', '--contact-address', [CompletionResultType]::ParameterName, 'Address peers should use to reach this worker, host:port')
            [CompletionResult]::new('--death-timeout', '--death-timeout', [CompletionResultType]::ParameterName, 'Give up after the scheduler is unreachable this long, at start or later; it covers the whole connect (resolving, connecting, the handshake, registering)')
            [CompletionResult]::new('--access-file', '--access-file', [CompletionResultType]::ParameterName, 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster''s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise')
            [CompletionResult]::new('--tls-ca-file', '--tls-ca-file', [CompletionResultType]::ParameterName, 'Your organisation''s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'This process''s certificate (PEM, signed by --tls-ca-file; servers'' name their host)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The key of --tls-cert (PEM, mode 0600)')
            [CompletionResult]::new('--drain', '--drain', [CompletionResultType]::ParameterName, 'On SIGINT/SIGTERM, finish running tasks and hand results over before leaving')
            [CompletionResult]::new('--lifetime-restart', '--lifetime-restart', [CompletionResultType]::ParameterName, 'Start a new worker after one retires (under a nanny)')
            [CompletionResult]::new('--no-security', '--no-security', [CompletionResultType]::ParameterName, 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it')
            [CompletionResult]::new('--no-nanny', '--no-nanny', [CompletionResultType]::ParameterName, 'Run the worker in this process, without a nanny (one worker only)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;local' {
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Number of workers (default and -1: the number of cores; auto: as `distd worker`)')
            [CompletionResult]::new('--nworkers', '--nworkers', [CompletionResultType]::ParameterName, 'Number of workers (default and -1: the number of cores; auto: as `distd worker`)')
            [CompletionResult]::new('--threads-per-worker', '--threads-per-worker', [CompletionResultType]::ParameterName, 'Threads per worker (default: 1; with -n auto, chosen with the number of workers)')
            [CompletionResult]::new('--host', '--host', [CompletionResultType]::ParameterName, 'Interface the scheduler listens on')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Scheduler port (0 picks a free one)')
            [CompletionResult]::new('--local-directory', '--local-directory', [CompletionResultType]::ParameterName, 'Folder for the workers'' scratch files')
            [CompletionResult]::new('--run', '--run', [CompletionResultType]::ParameterName, 'Run this graph file on the cluster, then exit')
            [CompletionResult]::new('--access-file', '--access-file', [CompletionResultType]::ParameterName, 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster''s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise')
            [CompletionResult]::new('--tls-ca-file', '--tls-ca-file', [CompletionResultType]::ParameterName, 'Your organisation''s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'This process''s certificate (PEM, signed by --tls-ca-file; servers'' name their host)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The key of --tls-cert (PEM, mode 0600)')
            [CompletionResult]::new('--processes', '--processes', [CompletionResultType]::ParameterName, 'Run the workers as separate processes under a nanny, not as threads of this one')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'With --run: never draw a progress bar')
            [CompletionResult]::new('--wait-for-workers', '--wait-for-workers', [CompletionResultType]::ParameterName, 'With --run: wait for a worker that can run a task that no worker can (a resource, a worker name), instead of failing at once')
            [CompletionResult]::new('--no-security', '--no-security', [CompletionResultType]::ParameterName, 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;ssh' {
            [CompletionResult]::new('--hostfile', '--hostfile', [CompletionResultType]::ParameterName, 'Read host patterns from this file (one per line, # comments)')
            [CompletionResult]::new('--scheduler', '--scheduler', [CompletionResultType]::ParameterName, 'Host of the scheduler (default: the first host)')
            [CompletionResult]::new('--scheduler-port', '--scheduler-port', [CompletionResultType]::ParameterName, 'Scheduler port (0 picks a free one)')
            [CompletionResult]::new('--nthreads', '--nthreads', [CompletionResultType]::ParameterName, 'Threads per worker (default: the remote cores / nworkers)')
            [CompletionResult]::new('--nworkers', '--nworkers', [CompletionResultType]::ParameterName, 'Worker processes per host')
            [CompletionResult]::new('--memory-limit', '--memory-limit', [CompletionResultType]::ParameterName, 'Memory per worker (as `distd worker --memory-limit`; see --help)')
            [CompletionResult]::new('--ssh-username', '--ssh-username', [CompletionResultType]::ParameterName, 'User name for SSH')
            [CompletionResult]::new('--ssh-port', '--ssh-port', [CompletionResultType]::ParameterName, 'SSH port')
            [CompletionResult]::new('--ssh-private-key', '--ssh-private-key', [CompletionResultType]::ParameterName, 'SSH private key')
            [CompletionResult]::new('--ssh-config', '--ssh-config', [CompletionResultType]::ParameterName, 'An ssh configuration file to use instead of ~/.ssh/config (ssh -F)')
            [CompletionResult]::new('--remote-distd', '--remote-distd', [CompletionResultType]::ParameterName, 'The distd to run on the hosts (its version must equal this one''s)')
            [CompletionResult]::new('--remote-dir', '--remote-dir', [CompletionResultType]::ParameterName, 'With --upload: where the binary goes on each host (relative to the remote home)')
            [CompletionResult]::new('--local-directory', '--local-directory', [CompletionResultType]::ParameterName, 'Scratch folder of the workers on each host')
            [CompletionResult]::new('--log-directory', '--log-directory', [CompletionResultType]::ParameterName, 'Also write every remote process''s output to files in this local folder')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Give up on a host that does not answer within this long')
            [CompletionResult]::new('--access-file', '--access-file', [CompletionResultType]::ParameterName, 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster''s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise')
            [CompletionResult]::new('--tls-ca-file', '--tls-ca-file', [CompletionResultType]::ParameterName, 'Your organisation''s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'This process''s certificate (PEM, signed by --tls-ca-file; servers'' name their host)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The key of --tls-cert (PEM, mode 0600)')
            [CompletionResult]::new('--upload', '--upload', [CompletionResultType]::ParameterName, 'Copy this distd binary to each host (checksummed; reused when already there)')
            [CompletionResult]::new('--no-security', '--no-security', [CompletionResultType]::ParameterName, 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;submit' {
            [CompletionResult]::new('--scheduler-file', '--scheduler-file', [CompletionResultType]::ParameterName, 'Read the scheduler''s address and credential from this file (written by `distd scheduler --scheduler-file`)')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The task''s key (default: a unique one)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Kill the command after this long')
            [CompletionResult]::new('--cwd', '--cwd', [CompletionResultType]::ParameterName, 'Working directory of the command on the worker')
            [CompletionResult]::new('--env', '--env', [CompletionResultType]::ParameterName, 'Extra environment variable for the command, NAME=VALUE (repeatable)')
            [CompletionResult]::new('--access-file', '--access-file', [CompletionResultType]::ParameterName, 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster''s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise')
            [CompletionResult]::new('--tls-ca-file', '--tls-ca-file', [CompletionResultType]::ParameterName, 'Your organisation''s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'This process''s certificate (PEM, signed by --tls-ca-file; servers'' name their host)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The key of --tls-cert (PEM, mode 0600)')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Do not read stdin: the command''s stdin is /dev/null (as with `ssh -n`)')
            [CompletionResult]::new('--no-stdin', '--no-stdin', [CompletionResultType]::ParameterName, 'Do not read stdin: the command''s stdin is /dev/null (as with `ssh -n`)')
            [CompletionResult]::new('--no-security', '--no-security', [CompletionResultType]::ParameterName, 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;run' {
            [CompletionResult]::new('--scheduler', '--scheduler', [CompletionResultType]::ParameterName, 'Run on this cluster instead of starting a local one')
            [CompletionResult]::new('--scheduler-file', '--scheduler-file', [CompletionResultType]::ParameterName, 'Run on the cluster whose scheduler wrote this file (`distd scheduler --scheduler-file`); it also carries the credential')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Workers of the local cluster (default and -1: the number of cores; auto: as `distd worker`)')
            [CompletionResult]::new('--nworkers', '--nworkers', [CompletionResultType]::ParameterName, 'Workers of the local cluster (default and -1: the number of cores; auto: as `distd worker`)')
            [CompletionResult]::new('--threads-per-worker', '--threads-per-worker', [CompletionResultType]::ParameterName, 'Threads per worker (default: 1; with -n auto, chosen with the number of workers)')
            [CompletionResult]::new('--access-file', '--access-file', [CompletionResultType]::ParameterName, 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster''s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise')
            [CompletionResult]::new('--tls-ca-file', '--tls-ca-file', [CompletionResultType]::ParameterName, 'Your organisation''s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'This process''s certificate (PEM, signed by --tls-ca-file; servers'' name their host)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The key of --tls-cert (PEM, mode 0600)')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw a progress bar')
            [CompletionResult]::new('--wait-for-workers', '--wait-for-workers', [CompletionResultType]::ParameterName, 'Wait for a worker that can run a task that no connected worker can (a resource, a worker name), instead of failing at once naming the task and what it needs')
            [CompletionResult]::new('--no-security', '--no-security', [CompletionResultType]::ParameterName, 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;info' {
            [CompletionResult]::new('--scheduler-file', '--scheduler-file', [CompletionResultType]::ParameterName, 'Read the scheduler''s address and credential from this file (written by `distd scheduler --scheduler-file`)')
            [CompletionResult]::new('--access-file', '--access-file', [CompletionResultType]::ParameterName, 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster''s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise')
            [CompletionResult]::new('--tls-ca-file', '--tls-ca-file', [CompletionResultType]::ParameterName, 'Your organisation''s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'This process''s certificate (PEM, signed by --tls-ca-file; servers'' name their host)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The key of --tls-cert (PEM, mode 0600)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON instead of a table')
            [CompletionResult]::new('--no-security', '--no-security', [CompletionResultType]::ParameterName, 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;restart' {
            [CompletionResult]::new('--scheduler-file', '--scheduler-file', [CompletionResultType]::ParameterName, 'Read the scheduler''s address and credential from this file (written by `distd scheduler --scheduler-file`)')
            [CompletionResult]::new('--access-file', '--access-file', [CompletionResultType]::ParameterName, 'The cluster credential to use (an access file from a scheduler or `distd access generate`), instead of the one found by the cluster''s id in the access folder; without it, DISTD_ACCESS_FILE, unless another flag here says otherwise')
            [CompletionResult]::new('--tls-ca-file', '--tls-ca-file', [CompletionResultType]::ParameterName, 'Your organisation''s CA certificate (PEM), with --tls-cert and --tls-key: used instead of a generated credential')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'This process''s certificate (PEM, signed by --tls-ca-file; servers'' name their host)')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The key of --tls-cert (PEM, mode 0600)')
            [CompletionResult]::new('--no-security', '--no-security', [CompletionResultType]::ParameterName, 'Turn off TLS and authentication: anyone who can reach the ports can run commands as this user. Every process of the cluster must be given it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;access' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('generate', 'generate', [CompletionResultType]::ParameterValue, 'Make a new cluster credential in FILE (mode 0600), for `distd scheduler --access-file FILE` and its workers and clients on hosts without a shared home')
            [CompletionResult]::new('client-file', 'client-file', [CompletionResultType]::ParameterValue, 'Copy an access file without its member part: for users who may submit but not add workers')
            break
        }
        'distd;access;generate' {
            [CompletionResult]::new('--client-only', '--client-only', [CompletionResultType]::ParameterName, 'Leave out the member part: the file can submit, but not join as a worker')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;access;client-file' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'distd;help' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
