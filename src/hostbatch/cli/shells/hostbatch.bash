# bash completion for batch_run, batch_scp and hostbatch, from `hostbatch completion bash`.
# Install for everyone: hostbatch completion bash > /etc/bash_completion.d/hostbatch
# or for yourself: hostbatch completion bash > ~/.hostbatch.bash && echo '. ~/.hostbatch.bash' >> ~/.bashrc
# Each TAB asks `hostbatch __complete`, which reads the options from hostbatch itself and
# host and group names from the inventory (-i on the line, else the usual lookup).

_hostbatch_complete() {
    local cur=${COMP_WORDS[COMP_CWORD]} tool=hostbatch line
    local -a reply=()
    case ${COMP_WORDS[0]} in
        */*) [[ -x ${COMP_WORDS[0]%/*}/hostbatch ]] && tool=${COMP_WORDS[0]%/*}/hostbatch ;;
    esac
    while IFS= read -r line; do
        reply+=("$line")
    done < <("$tool" __complete bash -- "${COMP_WORDS[@]:0:COMP_CWORD}" "$cur" 2>/dev/null)
    case ${reply[0]-} in
        :files) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
        :dirs) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
        *) COMPREPLY=("${reply[@]}") ;;
    esac
}

complete -F _hostbatch_complete batch_run batch_scp hostbatch
