#!/usr/bin/env bash
# Serve the teacher once with vLLM, then run the gaploop loop against it; the teacher is stopped on exit.
# See docs/gpu.md. Run from anywhere; paths are relative to where you call it.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/launch_multinode.sh --config CONFIG --teacher-model NAME [options] [-- key=value ...]

Starts `python -m vllm.entrypoints.openai.api_server` for the teacher on --teacher-gpus of this node (or uses
--teacher-url, a server already running), waits until it answers /v1/models, then runs
`gaploop run CONFIG` with teacher.llm.base_url / teacher.llm.model pointing at it and, with --hostfile,
training through the DeepSpeed launcher on the hostfile's nodes. Extra key=value overrides after `--`.

options:
  --config FILE          run config (e.g. configs/gsm8k_llama3.2-1b.yaml)                    [required]
  --teacher-model NAME   the teacher's HF name or folder, served under that name             [required]
  --teacher-gpus LIST    GPUs of this node for the teacher, e.g. 4,5,6,7 (tensor parallel over all of them)
  --teacher-port PORT    port of the teacher's server (default 8000)
  --teacher-url URL      use this running OpenAI-compatible server instead of starting one
  --teacher-args "..."   extra arguments for the vLLM server (e.g. "--max-model-len 8192")
  --student-gpus LIST    GPUs of this node for the student (evaluation, IFD, single-node training)
  --hostfile FILE        DeepSpeed hostfile: train on its nodes (multi-node); omit for this node only
  --wait SECONDS         how long to wait for the teacher to come up (default 1800)
  --log-dir DIR          where the teacher's log goes (default runs/launch-logs)
  --dry-run              print the commands and exit
  -h, --help             this text
USAGE
}

die() { echo "launch_multinode: $*" >&2; exit 2; }

config="" teacher_model="" teacher_gpus="" teacher_port=8000 teacher_url="" teacher_args=""
student_gpus="" hostfile="" wait_s=1800 log_dir="runs/launch-logs" dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --config) config="${2:-}"; shift 2 ;;
        --teacher-model) teacher_model="${2:-}"; shift 2 ;;
        --teacher-gpus) teacher_gpus="${2:-}"; shift 2 ;;
        --teacher-port) teacher_port="${2:-}"; shift 2 ;;
        --teacher-url) teacher_url="${2:-}"; shift 2 ;;
        --teacher-args) teacher_args="${2:-}"; shift 2 ;;
        --student-gpus) student_gpus="${2:-}"; shift 2 ;;
        --hostfile) hostfile="${2:-}"; shift 2 ;;
        --wait) wait_s="${2:-}"; shift 2 ;;
        --log-dir) log_dir="${2:-}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
overrides=("$@")

[ -n "$config" ] || die "--config is required (see --help)"
[ -f "$config" ] || die "--config $config: no such file"
[ -n "$teacher_model" ] || die "--teacher-model is required: the name the teacher is served under"
[ -z "$hostfile" ] || [ -f "$hostfile" ] || die "--hostfile $hostfile: no such file"
[[ "$teacher_port" =~ ^[0-9]+$ ]] || die "--teacher-port must be a number, got '$teacher_port'"
[[ "$wait_s" =~ ^[0-9]+$ ]] || die "--wait must be a number of seconds, got '$wait_s'"
for list in "$teacher_gpus" "$student_gpus"; do
    [[ -z "$list" || "$list" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "GPU lists are comma-separated indices, got '$list'"
done
if [ -n "$teacher_gpus" ] && [ -n "$student_gpus" ]; then
    for g in ${teacher_gpus//,/ }; do
        [[ ",$student_gpus," != *",$g,"* ]] || die "GPU $g is in both --teacher-gpus and --student-gpus"
    done
fi
if [ -n "$hostfile" ] && [ -n "$teacher_gpus" ]; then
    # DeepSpeed trains on GPUs 0..slots-1 of every node in the hostfile, whatever CUDA_VISIBLE_DEVICES says;
    # if this node is listed, those must not include the teacher's.
    this_node=" localhost 127.0.0.1 $(uname -n) $(uname -n | cut -d. -f1) ${HOSTNAME:-} "
    while read -r host slots _ || [ -n "$host" ]; do
        [[ -n "$host" && "$host" != \#* && "$this_node" == *" $host "* ]] || continue
        slots="${slots#slots=}"
        [[ "$slots" =~ ^[0-9]+$ ]] || continue  # DeepSpeed refuses a malformed line itself
        for g in ${teacher_gpus//,/ }; do
            [ "$g" -ge "$slots" ] || die "the hostfile lists this node ($host) with slots=$slots: training would \
take GPUs 0-$((slots - 1)) here, and the teacher holds GPU $g; give it fewer slots or leave it out"
        done
    done < "$hostfile"
fi
[ -n "$teacher_url" ] || [ -n "$teacher_gpus" ] || die "give --teacher-gpus (to start the teacher) or --teacher-url"
[ -z "$teacher_url" ] || [ -z "$teacher_gpus" ] || die "give --teacher-gpus or --teacher-url, not both"

repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
gaploop="${GAPLOOP:-$repo/.venv/bin/gaploop}"

server=()
if [ -z "$teacher_url" ]; then
    tp=$(awk -F, '{print NF}' <<<"$teacher_gpus")
    # shellcheck disable=SC2206  # --teacher-args is meant to split into words
    # setsid: the server and the workers it spawns form one process group, stopped together on exit.
    server=(setsid env "CUDA_VISIBLE_DEVICES=$teacher_gpus" "$python" -m vllm.entrypoints.openai.api_server
        --model "$teacher_model" --served-model-name "$teacher_model" --port "$teacher_port"
        --tensor-parallel-size "$tp" $teacher_args)
    teacher_url="http://127.0.0.1:$teacher_port/v1"  # the agents run in the orchestrator, on this node
fi

run=("$gaploop" run "$config" "teacher.llm.base_url=$teacher_url" "teacher.llm.model=$teacher_model")
run+=("training.launcher=deepspeed")
[ -z "$hostfile" ] || run+=("training.hostfile=$(cd "$(dirname "$hostfile")" && pwd)/$(basename "$hostfile")")
run+=("${overrides[@]}")
student_env=()
[ -z "$student_gpus" ] || student_env=(env "CUDA_VISIBLE_DEVICES=$student_gpus")

if [ "$dry_run" = 1 ]; then
    [ ${#server[@]} -eq 0 ] || echo "teacher: ${server[*]} > $log_dir/teacher.log"
    echo "wait:    until $teacher_url/models answers (at most ${wait_s}s)"
    echo "run:     ${student_env[*]} ${run[*]}"
    exit 0
fi

[ -x "$gaploop" ] || die "$gaploop not found: install the project (scripts/bootstrap.sh) or set GAPLOOP"
command -v curl > /dev/null || die "curl is needed to wait for the teacher's server"
if [ ${#server[@]} -gt 0 ]; then
    "$python" -c "import vllm" 2> /dev/null || die "$python cannot import vllm: install it (scripts/bootstrap.sh on a GPU node) or set PYTHON"
fi

teacher_pid=""
cleanup() {
    [ -n "$teacher_pid" ] || return 0
    # The whole group: a server that crashed can leave workers holding GPU memory.
    if kill -0 -- "-$teacher_pid" 2>/dev/null; then
        echo "launch_multinode: stopping the teacher (process group $teacher_pid)" >&2
        kill -TERM -- "-$teacher_pid" 2>/dev/null || true
        for _ in $(seq 30); do  # vLLM shuts its workers down on SIGTERM; give it 30 s, then kill
            kill -0 -- "-$teacher_pid" 2>/dev/null || break
            sleep 1
        done
        kill -KILL -- "-$teacher_pid" 2>/dev/null || true
    fi
    wait "$teacher_pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ${#server[@]} -gt 0 ]; then
    mkdir -p "$log_dir"
    echo "launch_multinode: starting the teacher $teacher_model on GPUs $teacher_gpus (log: $log_dir/teacher.log)" >&2
    "${server[@]}" > "$log_dir/teacher.log" 2>&1 &
    teacher_pid=$!
fi

deadline=$((SECONDS + wait_s))
until curl -sf --max-time 10 "$teacher_url/models" > /dev/null; do
    if [ -n "$teacher_pid" ] && ! kill -0 "$teacher_pid" 2>/dev/null; then
        echo "launch_multinode: the teacher's server exited; the end of its log:" >&2
        tail -n 30 "$log_dir/teacher.log" >&2 || true
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "launch_multinode: the teacher did not answer at $teacher_url/models within ${wait_s}s" >&2
        exit 1
    fi
    sleep 2
done
echo "launch_multinode: the teacher answers at $teacher_url" >&2

"${student_env[@]}" "${run[@]}"
