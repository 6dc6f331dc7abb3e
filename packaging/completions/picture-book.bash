# bash completion for picture-book(1)

_picture_book() {
    local cur prev words cword
    _init_completion || return

    local global="-c --config --state-dir -v --verbose -q --quiet -h --help -V --version"
    local load="-r --registry -a --all -n --dry-run -f --force -w --wait --json --from --prune"
    local export="-r --registry -a --all -n --dry-run --json --archive"
    local tags="-r --registry --semver --match --exclude --latest --all-tags --json"

    case $prev in
        -c | --config)
            _filedir '@(yaml|yml)'
            return
            ;;
        --state-dir)
            _filedir -d
            return
            ;;
        --from)
            _filedir
            return
            ;;
        --archive)
            _filedir tar
            return
            ;;
        -w | --wait)
            COMPREPLY=($(compgen -W "0 90s 10m 30m 1h" -- "$cur"))
            return
            ;;
        -r | --registry)
            # The hostnames of the configuration in use, as check lists them.
            local config=() i
            for ((i = 1; i < cword; i++)); do
                case ${words[i]} in
                    -c | --config) config=(--config "${words[i + 1]}") ;;
                esac
            done
            COMPREPLY=($(compgen -W "$(picture-book -q "${config[@]}" check 2>/dev/null | cut -d' ' -f1)" -- "$cur"))
            return
            ;;
    esac

    local command="" i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            load | export | check | tags | sync | help)
                command=${words[i]}
                break
                ;;
        esac
    done
    case $command in
        "") COMPREPLY=($(compgen -W "load export check tags sync help $global" -- "$cur")) ;;
        load) COMPREPLY=($(compgen -W "$load $global" -- "$cur")) ;;
        tags) COMPREPLY=($(compgen -W "$tags $global" -- "$cur")) ;;
        export)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$export $global" -- "$cur"))
            else
                _filedir -d
            fi
            ;;
        help) COMPREPLY=($(compgen -W "load export check tags sync" -- "$cur")) ;;
        *) COMPREPLY=($(compgen -W "$global" -- "$cur")) ;;
    esac
}
complete -F _picture_book picture-book
