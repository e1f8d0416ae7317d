# bash completion for tether
# Generated from the command tree by `python -m tools.completions --write`; do not edit.

__tether_commands() {  # subcommands of command $1
    case $1 in
        '') echo 'errors demo shell logs port-forward status doctor auth gateway' ;;
        'auth') echo 'login status logout token' ;;
        'gateway') echo 'serve approve deny pending token' ;;
        'gateway token') echo 'create list revoke' ;;
    esac
}

__tether_options() {  # options of command $1, global ones included
    case $1 in
        '') echo '--version --install-completion --show-completion --help' ;;
        'errors') echo '--help' ;;
        'demo') echo '--serve --help' ;;
        'shell') echo '--instance --tty -t --no-tty -T --help' ;;
        'logs') echo '--follow -f --since --tail --timestamps --instance --no-prefix --raw --help' ;;
        'port-forward') echo '--address --instance --help' ;;
        'status') echo '--help' ;;
        'doctor') echo '--help' ;;
        'auth') echo '--help' ;;
        'auth login') echo '--context --help' ;;
        'auth status') echo '--help' ;;
        'auth logout') echo '--help' ;;
        'auth token') echo '--help' ;;
        'gateway') echo '--help' ;;
        'gateway serve') echo '--config -c --listen --port --state-dir --tls-cert --tls-key --insecure-listen --help' ;;
        'gateway approve') echo '--role --user --state-dir --help' ;;
        'gateway deny') echo '--state-dir --help' ;;
        'gateway pending') echo '--state-dir --help' ;;
        'gateway token') echo '--help' ;;
        'gateway token create') echo '--role --name --state-dir --help' ;;
        'gateway token list') echo '--state-dir --help' ;;
        'gateway token revoke') echo '--state-dir --help' ;;
    esac
    echo '--output -o --verbose -v --gateway --retry-for --connect-timeout --ca-cert --insecure --keepalive-interval --keepalive-timeout'
}

__tether_value() {  # what option $2 of command $1 takes
    case $1\|$2 in
        'shell|--instance') echo 'any' ;;
        'logs|--since') echo 'any' ;;
        'logs|--tail') echo 'any' ;;
        'logs|--instance') echo 'any' ;;
        'port-forward|--address') echo 'any' ;;
        'port-forward|--instance') echo 'any' ;;
        'auth login|--context') echo 'any' ;;
        'gateway serve|--config'|'gateway serve|-c') echo 'file' ;;
        'gateway serve|--listen') echo 'any' ;;
        'gateway serve|--port') echo 'any' ;;
        'gateway serve|--state-dir') echo 'dir' ;;
        'gateway serve|--tls-cert') echo 'file' ;;
        'gateway serve|--tls-key') echo 'file' ;;
        'gateway approve|--role') echo 'any' ;;
        'gateway approve|--user') echo 'any' ;;
        'gateway approve|--state-dir') echo 'dir' ;;
        'gateway deny|--state-dir') echo 'dir' ;;
        'gateway pending|--state-dir') echo 'dir' ;;
        'gateway token create|--role') echo 'any' ;;
        'gateway token create|--name') echo 'any' ;;
        'gateway token create|--state-dir') echo 'dir' ;;
        'gateway token list|--state-dir') echo 'dir' ;;
        'gateway token revoke|--state-dir') echo 'dir' ;;
        *'|--output'|*'|-o') echo 'choice text json' ;;
        *'|--gateway') echo 'any' ;;
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
        'errors|0') echo 'any' ;;
        'demo|0') echo 'choice shell logs port-forward' ;;
        'shell|0') echo 'service' ;;
        'shell|1') echo 'any' ;;
        'shell|'*) echo 'any' ;;
        'logs|0') echo 'service' ;;
        'port-forward|0') echo 'service' ;;
        'port-forward|1') echo 'any' ;;
        'port-forward|'*) echo 'any' ;;
        'status|0') echo 'service' ;;
        'auth login|0') echo 'any' ;;
        'gateway approve|0') echo 'any' ;;
        'gateway deny|0') echo 'any' ;;
        'gateway token revoke|0') echo 'any' ;;
        *) echo none ;;
    esac
}

__tether_is_global() {  # whether $1 is accepted anywhere
    case $1 in
        '--output'|'-o'|'--verbose'|'-v'|'--gateway'|'--retry-for'|'--connect-timeout'|'--ca-cert'|'--insecure'|'--keepalive-interval'|'--keepalive-timeout') return 0 ;;
    esac
    return 1
}

__tether_services() {
    command tether completion services "$@" 2>/dev/null
}

_tether() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local path='' pending='' option='' prefix='' kind='' word commands i n=0
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
        else
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
        service)
            commands=$(__tether_services "${globals[@]}")
            COMPREPLY=($(compgen -P "$prefix" -W "$commands" -- "$cur")) ;;
        choice\ *) COMPREPLY=($(compgen -P "$prefix" -W "${kind#choice }" -- "$cur")) ;;
        file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -P "$prefix" -f -- "$cur")) ;;
        dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -P "$prefix" -d -- "$cur")) ;;
    esac
    return 0
}

complete -F _tether tether
