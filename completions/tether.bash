# bash completion for tether
# Generated from the command tree by `python -m tools.completions --write`; do not edit.

__tether_commands() {  # subcommands of command $1
    case $1 in
        '') echo 'shell exec logs port-forward status doctor errors version demo auth gateway completion' ;;
        'auth') echo 'login switch status logout token' ;;
        'gateway') echo 'serve approve deny pending audit token keys logins' ;;
        'gateway token') echo 'create list revoke' ;;
        'gateway keys') echo 'list rotate' ;;
        'gateway logins') echo 'list revoke' ;;
        'completion') echo 'bash zsh fish' ;;
    esac
}

__tether_options() {  # options of command $1, global ones included
    case $1 in
        '') echo '--version --install-completion --show-completion --help -h' ;;
        'shell') echo '--instance --tty -t --no-tty -T --help -h' ;;
        'exec') echo '--instance --tty -t --no-tty -T --help -h' ;;
        'logs') echo '--follow -f --since --tail --timestamps --instance --no-prefix --prefix --raw --help -h' ;;
        'port-forward') echo '--address --instance --help -h' ;;
        'status') echo '--help -h' ;;
        'doctor') echo '--help -h' ;;
        'errors') echo '--help -h' ;;
        'version') echo '--help -h' ;;
        'demo') echo '--serve --help -h' ;;
        'auth') echo '--help -h' ;;
        'auth login') echo '--help -h' ;;
        'auth switch') echo '--help -h' ;;
        'auth status') echo '--help -h' ;;
        'auth logout') echo '--help -h' ;;
        'auth token') echo '--help -h' ;;
        'gateway') echo '--help -h' ;;
        'gateway serve') echo '--config -c --listen --port --state --state-dir --tls-cert --tls-key --insecure-listen --node --help -h' ;;
        'gateway approve') echo '--role --user --state --state-dir --help -h' ;;
        'gateway deny') echo '--state --state-dir --help -h' ;;
        'gateway pending') echo '--state --state-dir --help -h' ;;
        'gateway audit') echo '--limit --state --state-dir --help -h' ;;
        'gateway token') echo '--help -h' ;;
        'gateway token create') echo '--role --name --state --state-dir --help -h' ;;
        'gateway token list') echo '--state --state-dir --help -h' ;;
        'gateway token revoke') echo '--state --state-dir --help -h' ;;
        'gateway keys') echo '--help -h' ;;
        'gateway keys list') echo '--state --state-dir --help -h' ;;
        'gateway keys rotate') echo '--state --state-dir --help -h' ;;
        'gateway logins') echo '--help -h' ;;
        'gateway logins list') echo '--state --state-dir --help -h' ;;
        'gateway logins revoke') echo '--state --state-dir --help -h' ;;
        'completion') echo '--help -h' ;;
        'completion bash') echo '--help -h' ;;
        'completion zsh') echo '--help -h' ;;
        'completion fish') echo '--help -h' ;;
    esac
    echo '--output -o --verbose -v --gateway --context --retry-for --connect-timeout --ca-cert --insecure --keepalive-interval --keepalive-timeout'
}

__tether_value() {  # what option $2 of command $1 takes
    case $1\|$2 in
        'shell|--instance') echo 'instance' ;;
        'exec|--instance') echo 'instance' ;;
        'logs|--since') echo 'any' ;;
        'logs|--tail') echo 'any' ;;
        'logs|--instance') echo 'instance' ;;
        'port-forward|--address') echo 'any' ;;
        'port-forward|--instance') echo 'instance' ;;
        'gateway serve|--config'|'gateway serve|-c') echo 'file' ;;
        'gateway serve|--listen') echo 'any' ;;
        'gateway serve|--port') echo 'any' ;;
        'gateway serve|--state'|'gateway serve|--state-dir') echo 'any' ;;
        'gateway serve|--tls-cert') echo 'file' ;;
        'gateway serve|--tls-key') echo 'file' ;;
        'gateway serve|--node') echo 'any' ;;
        'gateway approve|--role') echo 'any' ;;
        'gateway approve|--user') echo 'any' ;;
        'gateway approve|--state'|'gateway approve|--state-dir') echo 'any' ;;
        'gateway deny|--state'|'gateway deny|--state-dir') echo 'any' ;;
        'gateway pending|--state'|'gateway pending|--state-dir') echo 'any' ;;
        'gateway audit|--limit') echo 'any' ;;
        'gateway audit|--state'|'gateway audit|--state-dir') echo 'any' ;;
        'gateway token create|--role') echo 'any' ;;
        'gateway token create|--name') echo 'any' ;;
        'gateway token create|--state'|'gateway token create|--state-dir') echo 'any' ;;
        'gateway token list|--state'|'gateway token list|--state-dir') echo 'any' ;;
        'gateway token revoke|--state'|'gateway token revoke|--state-dir') echo 'any' ;;
        'gateway keys list|--state'|'gateway keys list|--state-dir') echo 'any' ;;
        'gateway keys rotate|--state'|'gateway keys rotate|--state-dir') echo 'any' ;;
        'gateway logins list|--state'|'gateway logins list|--state-dir') echo 'any' ;;
        'gateway logins revoke|--state'|'gateway logins revoke|--state-dir') echo 'any' ;;
        *'|--output'|*'|-o') echo 'choice text json' ;;
        *'|--gateway') echo 'any' ;;
        *'|--context') echo 'context' ;;
        *'|--retry-for') echo 'any' ;;
        *'|--connect-timeout') echo 'any' ;;
        *'|--ca-cert') echo 'file' ;;
        *'|--keepalive-interval') echo 'any' ;;
        *'|--keepalive-timeout') echo 'any' ;;
        *) echo flag ;;
    esac
}

__tether_argument() {  # what positional $2 of command $1 takes
    case $1\|$2 in
        'shell|0') echo 'service' ;;
        'shell|1') echo 'any' ;;
        'shell|'*) echo 'any' ;;
        'exec|0') echo 'service' ;;
        'exec|1') echo 'any' ;;
        'exec|'*) echo 'any' ;;
        'logs|0') echo 'service' ;;
        'port-forward|0') echo 'service' ;;
        'port-forward|1') echo 'any' ;;
        'port-forward|'*) echo 'any' ;;
        'status|0') echo 'service' ;;
        'errors|0') echo 'any' ;;
        'demo|0') echo 'choice shell logs port-forward' ;;
        'auth login|0') echo 'any' ;;
        'auth switch|0') echo 'context' ;;
        'gateway approve|0') echo 'any' ;;
        'gateway deny|0') echo 'any' ;;
        'gateway token revoke|0') echo 'any' ;;
        'gateway logins revoke|0') echo 'any' ;;
        *) echo none ;;
    esac
}

__tether_is_global() {  # whether $1 is accepted anywhere
    case $1 in
        '--output'|'-o'|'--verbose'|'-v'|'--gateway'|'--context'|'--retry-for'|'--connect-timeout'|'--ca-cert'|'--insecure'|'--keepalive-interval'|'--keepalive-timeout') return 0 ;;
    esac
    return 1
}

__tether_names() {  # what a hidden helper lists: services, instances SERVICE, contexts
    command tether completion "$@" 2>/dev/null
}

_tether() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local path='' pending='' option='' prefix='' kind='' first='' word commands i n=0
    local -a globals=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        [[ $word == '=' ]] && continue
        if [[ -n $pending ]]; then
            __tether_is_global "$pending" && globals+=("$pending" "$word")
            pending=''
            continue
        fi
        case $word in
            -*=*) __tether_is_global "${word%%=*}" && globals+=("$word"); continue ;;
            -*)
                if [[ $(__tether_value "$path" "$word") == flag ]]; then
                    __tether_is_global "$word" && globals+=("$word")
                else
                    pending=$word
                fi
                continue ;;
        esac
        if [[ " $(__tether_commands "$path") " == *" $word "* ]]; then
            path=${path:+$path }$word
            n=0
            first=''
        else
            ((n == 0)) && first=$word
            n=$((n + 1))
        fi
    done
    if [[ $cur == '=' ]]; then
        option=$prev
        cur=''
    elif [[ $prev == '=' && $COMP_CWORD -ge 2 ]]; then
        option=${COMP_WORDS[COMP_CWORD-2]}
    elif [[ $cur == -*=* ]]; then
        option=${cur%%=*}
        prefix=$option=
        cur=${cur#*=}
    elif [[ -n $pending ]]; then
        option=$pending
    fi
    if [[ -n $option ]]; then
        kind=$(__tether_value "$path" "$option")
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(__tether_options "$path")" -- "$cur"))
        return 0
    else
        commands=$(__tether_commands "$path")
        if [[ -n $commands ]]; then
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
            return 0
        fi
        kind=$(__tether_argument "$path" "$n")
    fi
    case $kind in
        service|context)
            commands=$(__tether_names "${kind}s" "${globals[@]}")
            COMPREPLY=($(compgen -P "$prefix" -W "$commands" -- "$cur")) ;;
        instance)
            commands=$(__tether_names instances "$first" "${globals[@]}")
            COMPREPLY=($(compgen -P "$prefix" -W "$commands" -- "$cur")) ;;
        choice\ *) COMPREPLY=($(compgen -P "$prefix" -W "${kind#choice }" -- "$cur")) ;;
        file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -P "$prefix" -f -- "$cur")) ;;
        dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -P "$prefix" -d -- "$cur")) ;;
    esac
    return 0
}

complete -F _tether tether
