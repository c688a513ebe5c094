# fish completion for batch_run, batch_scp and hostbatch, from `hostbatch completion fish`.
# Install: hostbatch completion fish > ~/.config/fish/conf.d/hostbatch.fish
# (conf.d rather than completions/: fish would load completions/hostbatch.fish for the
# hostbatch command only, not for batch_run and batch_scp).
# Each TAB asks `hostbatch __complete`, which reads the options from hostbatch itself and
# host and group names from the inventory (-i on the line, else the usual lookup).

function __hostbatch_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    set -l tool hostbatch
    if string match -q -- '*/*' $words[1]; and test -x (path dirname -- $words[1])/hostbatch
        set tool (path dirname -- $words[1])/hostbatch
    end
    set -l reply ($tool __complete fish -- $words $cur 2>/dev/null)
    switch "$reply[1]"
        case :files
            __fish_complete_path $cur
        case :dirs
            __fish_complete_directories $cur
        case '*'
            printf '%s\n' $reply
    end
end

for command in batch_run batch_scp hostbatch
    complete -c $command -f -a '(__hostbatch_complete)'
end
