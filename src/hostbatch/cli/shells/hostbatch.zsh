#compdef batch_run batch_scp hostbatch
# zsh completion for batch_run, batch_scp and hostbatch, from `hostbatch completion zsh`.
# Install for everyone: hostbatch completion zsh > /usr/local/share/zsh/site-functions/_hostbatch
# or for yourself: hostbatch completion zsh > ~/.zfunc/_hostbatch (with fpath+=(~/.zfunc)
# before compinit in ~/.zshrc).
# Each TAB asks `hostbatch __complete`, which reads the options from hostbatch itself and
# host and group names from the inventory (-i on the line, else the usual lookup).

_hostbatch() {
    local tool=hostbatch
    local -a reply
    if [[ $words[1] == */* && -x ${words[1]:h}/hostbatch ]]; then
        tool=${words[1]:h}/hostbatch
    fi
    reply=("${(@f)$("$tool" __complete zsh -- "${(@)words[1,CURRENT-1]}" "$PREFIX" 2>/dev/null)}")
    reply=(${reply:#})
    case $reply[1] in
        :files) _files ;;
        :dirs) _files -/ ;;
        *) (( $#reply )) && _describe -t values hostbatch reply ;;
    esac
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _hostbatch "$@"
else
    compdef _hostbatch batch_run batch_scp hostbatch
fi
