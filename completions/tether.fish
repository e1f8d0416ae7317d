# fish completion for tether
# Generated from the command tree by `python -m tools.completions --write`; do not edit.

function __tether_commands --description 'Subcommands of a tether command'
    switch $argv[1]
        case ''
            printf '%s\t%s\n' 'shell' 'Open a shell in SERVICE, or run a command there, like ssh and kubectl…' 'exec' 'Alias of shell: tether exec SERVICE -- COMMAND runs COMMAND in SERVIC…' 'logs' 'Print the logs of SERVICE; with -f, follow them' 'port-forward' 'Forward local ports to a service\'s ports; one broken connection never…' 'status' 'Show the gateway\'s health, each service\'s backend health and its forw…' 'doctor' 'Check configuration, network, TLS, handshake, credential and roles, o…' 'errors' 'List the error codes tether can exit with, or explain one' 'version' 'Print tether\'s version, and the gateway\'s when one is configured and…' 'demo' 'Try tether on this machine: a gateway and a demo service, in this pro…' 'auth' 'Log in to a gateway, switch contexts, show or remove the stored crede…' 'gateway' 'Run the reference gateway and manage who may use it' 'completion' 'Print the shell completion script for bash, zsh or fish'
        case 'auth'
            printf '%s\t%s\n' 'login' 'Log in with the device flow: approve the code shown, in a browser or…' 'switch' 'Make context NAME the current one: commands use its gateway from now…' 'status' 'List the contexts (* marks the current one), then the credential in u…' 'logout' 'Remove this gateway\'s credential from the keyring' 'token' 'Print the current access token on stdout, for scripts; refreshed firs…'
        case 'gateway'
            printf '%s\t%s\n' 'serve' 'Run the gateway in the foreground until Ctrl+C or SIGTERM' 'approve' 'Approve a pending device login with a role' 'deny' 'Deny a pending device login' 'pending' 'List the device logins waiting for approval' 'audit' 'List the sessions gateways opened: when, who, where, from where, how…' 'token' 'API tokens: long-lived credentials for scripts and CI' 'keys' 'Signing keys of access tokens: list, rotate' 'logins' 'Device logins: list, revoke (their sessions end at once)'
        case 'gateway token'
            printf '%s\t%s\n' 'create' 'Make an API token and print it once; only its hash is kept' 'list' 'List API tokens (never their values)' 'revoke' 'Revoke API tokens by id or name; their open sessions close on every g…'
        case 'gateway keys'
            printf '%s\t%s\n' 'list' 'List the signing keys (ids and ages, never the keys)' 'rotate' 'Make a new signing key; tokens signed by the old one stay valid until…'
        case 'gateway logins'
            printf '%s\t%s\n' 'list' 'List device logins (refresh-token families), never their tokens' 'revoke' 'Revoke a user\'s logins: refreshes fail, open sessions close on every…'
        case 'completion'
            printf '%s\t%s\n' 'bash' 'Print the bash completion script' 'zsh' 'Print the zsh completion script' 'fish' 'Print the fish completion script'
    end
end

function __tether_options --description 'Options of a tether command'
    switch $argv[1]
        case ''
            printf '%s\t%s\n' '--version' 'Print the version and exit' '--install-completion' 'Install completion for the current shell' '--show-completion' 'Show completion for the current shell, to copy it or customize the in…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'shell'
            printf '%s\t%s\n' '--instance' 'One instance (replica) of the service; default: any' '--tty' 'Give the remote side a terminal even when stdin or stdout is not one…' '-t' 'Give the remote side a terminal even when stdin or stdout is not one…' '--no-tty' 'Never give the remote side a terminal: plain pipes, stdout and stderr…' '-T' 'Never give the remote side a terminal: plain pipes, stdout and stderr…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'exec'
            printf '%s\t%s\n' '--instance' 'One instance (replica) of the service; default: any' '--tty' 'Give the remote side a terminal even when stdin or stdout is not one…' '-t' 'Give the remote side a terminal even when stdin or stdout is not one…' '--no-tty' 'Never give the remote side a terminal: plain pipes, stdout and stderr…' '-T' 'Never give the remote side a terminal: plain pipes, stdout and stderr…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'logs'
            printf '%s\t%s\n' '--follow' 'Keep streaming new records; reconnects resume exactly where they stop…' '-f' 'Keep streaming new records; reconnects resume exactly where they stop…' '--since' 'Only records at or after this time: a duration back from now (15m, 1h…' '--tail' 'Start with the last N records of each instance (-1: all)' '--timestamps' 'Put each record\'s time (RFC 3339, UTC) before its message' '--instance' 'Only this instance (replica, pod, process); repeat for several' '--no-prefix' 'Start each line with its instance\'s name in brackets, as kubectl logs…' '--prefix' 'Start each line with its instance\'s name in brackets, as kubectl logs…' '--raw' 'Print each frame as it comes (for gateways that do not speak tether.v…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'port-forward'
            printf '%s\t%s\n' '--address' 'Local address to listen on; repeat for several' '--instance' 'One instance (replica) of the service' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'status'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'doctor'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'errors'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'version'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'demo'
            printf '%s\t%s\n' '--serve' 'Run only the demo gateway, until Ctrl+C or SIGTERM; print export line…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'auth'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'auth login'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'auth switch'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'auth status'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'auth logout'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'auth token'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway serve'
            printf '%s\t%s\n' '--config' 'The gateway\'s TOML file' '-c' 'The gateway\'s TOML file' '--listen' 'Address to listen on (default 127.0.0.1)' '--port' 'Port (default 7443; 0: any free port)' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--tls-cert' 'PEM certificate chain: serve wss' '--tls-key' 'PEM private key of --tls-cert' '--insecure-listen' 'Allow a non-loopback address without TLS' '--node' 'This gateway\'s name for resume routing, as the load balancer names it…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway approve'
            printf '%s\t%s\n' '--role' 'Viewer (logs), Deployer (shell, port-forward) or Admin' '--user' 'Who is logging in (the token\'s subject)' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway deny'
            printf '%s\t%s\n' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway pending'
            printf '%s\t%s\n' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway audit'
            printf '%s\t%s\n' '--limit' 'How many sessions, newest first' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway token'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway token create'
            printf '%s\t%s\n' '--role' 'Viewer (logs), Deployer (shell, port-forward) or Admin' '--name' 'What the token is for (ci, bot...)' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway token list'
            printf '%s\t%s\n' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway token revoke'
            printf '%s\t%s\n' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway keys'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway keys list'
            printf '%s\t%s\n' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway keys rotate'
            printf '%s\t%s\n' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway logins'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway logins list'
            printf '%s\t%s\n' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'gateway logins revoke'
            printf '%s\t%s\n' '--state' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--state-dir' 'The gateway\'s state: a directory (SQLite; default: the user state dir…' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'completion'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'completion bash'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'completion zsh'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
        case 'completion fish'
            printf '%s\t%s\n' '--help' 'Show the help and exit' '-h' 'Show the help and exit'
    end
    printf '%s\t%s\n' '--output' 'text for people, json for one JSON object per line (errors and events…' '-o' 'text for people, json for one JSON object per line (errors and events…' '--verbose' 'Show causes of errors, and the traceback of an internal error' '-v' 'Show causes of errors, and the traceback of an internal error' '--gateway' 'The gateway, e.g' '--context' 'Use this context of the config file instead of the current one (`teth…' '--retry-for' 'Keep retrying transient failures for this long (e.g' '--connect-timeout' 'One deadline over DNS, TCP, TLS and the WebSocket handshake' '--ca-cert' 'Trust this PEM bundle instead of the system store (SSL_CERT_FILE also…' '--insecure' 'Do not verify the gateway\'s TLS certificate' '--keepalive-interval' 'Send a ping this often (0: never)' '--keepalive-timeout' 'Declare the connection dead after this long with nothing received'
end

function __tether_value --description 'What an option of a tether command takes'
    switch "$argv[1]|$argv[2]"
        case 'shell|--instance'
            echo 'instance'
        case 'exec|--instance'
            echo 'instance'
        case 'logs|--since'
            echo 'any'
        case 'logs|--tail'
            echo 'any'
        case 'logs|--instance'
            echo 'instance'
        case 'port-forward|--address'
            echo 'any'
        case 'port-forward|--instance'
            echo 'instance'
        case 'gateway serve|--config' 'gateway serve|-c'
            echo 'file'
        case 'gateway serve|--listen'
            echo 'any'
        case 'gateway serve|--port'
            echo 'any'
        case 'gateway serve|--state' 'gateway serve|--state-dir'
            echo 'any'
        case 'gateway serve|--tls-cert'
            echo 'file'
        case 'gateway serve|--tls-key'
            echo 'file'
        case 'gateway serve|--node'
            echo 'any'
        case 'gateway approve|--role'
            echo 'any'
        case 'gateway approve|--user'
            echo 'any'
        case 'gateway approve|--state' 'gateway approve|--state-dir'
            echo 'any'
        case 'gateway deny|--state' 'gateway deny|--state-dir'
            echo 'any'
        case 'gateway pending|--state' 'gateway pending|--state-dir'
            echo 'any'
        case 'gateway audit|--limit'
            echo 'any'
        case 'gateway audit|--state' 'gateway audit|--state-dir'
            echo 'any'
        case 'gateway token create|--role'
            echo 'any'
        case 'gateway token create|--name'
            echo 'any'
        case 'gateway token create|--state' 'gateway token create|--state-dir'
            echo 'any'
        case 'gateway token list|--state' 'gateway token list|--state-dir'
            echo 'any'
        case 'gateway token revoke|--state' 'gateway token revoke|--state-dir'
            echo 'any'
        case 'gateway keys list|--state' 'gateway keys list|--state-dir'
            echo 'any'
        case 'gateway keys rotate|--state' 'gateway keys rotate|--state-dir'
            echo 'any'
        case 'gateway logins list|--state' 'gateway logins list|--state-dir'
            echo 'any'
        case 'gateway logins revoke|--state' 'gateway logins revoke|--state-dir'
            echo 'any'
        case '*''|--output' '*''|-o'
            echo 'choice text json'
        case '*''|--gateway'
            echo 'any'
        case '*''|--context'
            echo 'context'
        case '*''|--retry-for'
            echo 'any'
        case '*''|--connect-timeout'
            echo 'any'
        case '*''|--ca-cert'
            echo 'file'
        case '*''|--keepalive-interval'
            echo 'any'
        case '*''|--keepalive-timeout'
            echo 'any'
        case '*'
            echo flag
    end
end

function __tether_argument --description 'What a positional of a tether command takes'
    switch "$argv[1]|$argv[2]"
        case 'shell|0'
            echo 'service'
        case 'shell|1'
            echo 'any'
        case 'shell|''*'
            echo 'any'
        case 'exec|0'
            echo 'service'
        case 'exec|1'
            echo 'any'
        case 'exec|''*'
            echo 'any'
        case 'logs|0'
            echo 'service'
        case 'port-forward|0'
            echo 'service'
        case 'port-forward|1'
            echo 'any'
        case 'port-forward|''*'
            echo 'any'
        case 'status|0'
            echo 'service'
        case 'errors|0'
            echo 'any'
        case 'demo|0'
            echo 'choice shell logs port-forward'
        case 'auth login|0'
            echo 'any'
        case 'auth switch|0'
            echo 'context'
        case 'gateway approve|0'
            echo 'any'
        case 'gateway deny|0'
            echo 'any'
        case 'gateway token revoke|0'
            echo 'any'
        case 'gateway logins revoke|0'
            echo 'any'
        case '*'
            echo none
    end
end

function __tether_is_global --description 'Whether a tether option is accepted anywhere'
    contains -- $argv[1] '--output' '-o' '--verbose' '-v' '--gateway' '--context' '--retry-for' '--connect-timeout' '--ca-cert' '--insecure' '--keepalive-interval' '--keepalive-timeout'
end

function __tether_complete --description 'Completions for the tether command line'
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    set -l path ''
    set -l pending ''
    set -l globals
    set -l first ''
    set -l n 0
    for word in $tokens[2..-1]
        if test -n "$pending"
            __tether_is_global $pending; and set -a globals $pending $word
            set pending ''
            continue
        end
        switch $word
            case '-*=*'
                __tether_is_global (string replace -r '=.*' '' -- $word); and set -a globals $word
                continue
            case '-*'
                if test (__tether_value "$path" $word) = flag
                    __tether_is_global $word; and set -a globals $word
                else
                    set pending $word
                end
                continue
        end
        if contains -- $word (__tether_commands "$path" | string replace -r '\t.*' '')
            set path (string trim -- "$path $word")
            set n 0
            set first ''
        else
            test $n -eq 0; and set first $word
            set n (math $n + 1)
        end
    end
    set -l option ''
    set -l prefix ''
    if string match -qr -- '^-[^=]*=' $cur
        set option (string replace -r '=.*' '' -- $cur)
        set prefix "$option="
        set cur (string replace -- $prefix '' $cur)
    else if test -n "$pending"
        set option $pending
    end
    set -l kind
    if test -n "$option"
        set kind (__tether_value "$path" $option)
    else if string match -q -- '-*' $cur
        __tether_options "$path"
        return
    else
        set -l commands (__tether_commands "$path")
        if test (count $commands) -gt 0
            printf '%s\n' $commands
            return
        end
        set kind (__tether_argument "$path" $n)
    end
    switch "$kind"
        case service context
            for name in (command tether completion {$kind}s $globals 2>/dev/null)
                printf '%s%s\n' $prefix $name
            end
        case instance
            for name in (command tether completion instances "$first" $globals 2>/dev/null)
                printf '%s%s\n' $prefix $name
            end
        case 'choice *'
            for choice in (string split ' ' -- (string replace 'choice ' '' -- $kind))
                printf '%s%s\n' $prefix $choice
            end
        case file
            for item in (__fish_complete_path $cur)
                printf '%s%s\n' $prefix $item
            end
        case dir
            for item in (__fish_complete_directories $cur)
                printf '%s%s\n' $prefix $item
            end
    end
end

complete -c tether -f -a '(__tether_complete)'
