// --help texts. Kept next to each other so the CLI reads as one document.

const CONNECTION = `Connection (every command):
  --server URL         the service (env INVARIANCE_URL), e.g. http://localhost:8080
  --api-key KEY        an API key (env INVARIANCE_API_KEY)
  -h, --help           this help`;

const EXIT_CODES = `Exit codes:
  0  PASS or WARN verdict, or no gates and the run succeeded
  1  FAIL or ERROR verdict (ERROR: a gate could not be evaluated, e.g. no baseline run found)
  2  usage error, or input the service rejected (any 4xx; its code and detail go to stderr)
  3  service unreachable or failing (5xx), run failed or canceled, or --timeout reached`;

export const HELP: Record<string, string> = {
  main: `invariance: measure how invariant an ONNX image classifier is, from CI.

Usage:
  invariance eval --model m.onnx --images x.gz --labels y.gz --rotate -180:180:15 [options]
  invariance models push <file> [--name N --version V --tags a,b --preprocessing JSON]
  invariance models list [--name N --tag T --limit N]
  invariance datasets push (--images x.gz --labels y.gz | <file>) [--name N --class-names a,b,...]
  invariance datasets list [--name N --limit N]
  invariance runs get <id> | list [--tag --status --model-id] | wait <id> [--timeout 30m]
  invariance runs verdict <id> --gate ... [--baseline ...] | cancel <id>

Run "invariance <command> --help" for the options of a command.

${CONNECTION}
  --version            print the version

${EXIT_CODES}`,

  eval: `invariance eval: upload a model and a dataset (unless the service has them), sweep
transformations, wait, print the results and the verdict of the gates.

Usage:
  invariance eval --model m.onnx (--images x.gz --labels y.gz | --dataset d.zip | --dataset-id ID)
                  --rotate -180:180:15 [--scale 0.8,1.2 ...] [--gate 'ekld.overall<=0.1' ...]
                  [--baseline model:prod-model,tag:production] [--junit out.xml] [--markdown out.md] [--json]

Model and dataset:
  --model FILE         the .onnx file; reused when the service has the same bytes (sha256)
  --model-id ID        an uploaded model instead of --model
  --model-name NAME    name of the uploaded model (default: the file name)
  --images FILE        IDX images (raw or .gz), with --labels
  --labels FILE        IDX labels (raw or .gz)
  --dataset FILE       a .zip / .tar / .tar.gz of class folders, or an .npz
  --dataset-id ID      an uploaded dataset instead
  --dataset-name NAME  name of the uploaded dataset
  --class-names LIST   class names of an uploaded dataset: a,b,c or a JSON array
  --preprocessing JSON mean/std (and layout, outputIsProbability) for this run and for a newly
                       uploaded model, e.g. '{"mean":[0.286],"std":[0.353]}'

Sweep (each flag adds one family of points, in command-line order; repeat a flag for more):
  --rotate --scale --translate --translate-x --translate-y --shear --brightness --contrast
  --gamma --blur (gaussian_blur) --noise (gaussian_noise) --dilate --erode --background  VALUES
  --hflip --vflip      one point each
  VALUES is one of:
    FROM:TO:STEP            a range, END EXCLUSIVE like the API's: -180:180:15 is -180, -165, ..., 165
    FROM:TO:STEP:inclusive  the same, with TO included when a step lands on it
    A,B,C                   these values (one value is one point): 0,90,180,270
    [JSON]                  values as JSON, e.g. --translate '[[2,0],[-2,0],[0,2]]' (pairs dx,dy)
    {JSON}                  the rest of the family as JSON, e.g. --brightness
                            '{"uniform":{"min":-0.3,"max":0.3},"samples":8,"seed":1}'
  --transform JSON     any transform family of the API (e.g. {"type":"grid","of":[...]})
  --grid               combine all the families above into one grid (their product)
  --resize             resize images to the model input size when they differ

Metrics:
  --metrics LIST       accuracy,ekld,nv (default: all three)
  --nv-layers L        all (default) or layer1,layer2,...; none drops the nv metric
  --limit N            evaluate the first N samples only

Gates and verdict (fail the build when the model is not invariant enough):
  --gate 'EXPR'        repeatable; EXPR is [warn:][NAME:] METRIC OP VALUE
                         OP: < <= > >= (absolute), maxDrop maxIncrease (against --baseline;
                         VALUE absolute or relative like 2%)
                         warn: a failing gate gives WARN (exit 0) instead of FAIL
                         NAME: the gate's name in reports (default: the expression)
                       METRIC: accuracy.clean|mean|min|worstCase, accuracy.at(rotate=90),
                         consistency.mean, consistency.at(...), tta.accuracy, ekld.overall,
                         ekld.class(<index or name>), nv.layer(<name>[,<aggregation>])
                       e.g. --gate 'accuracy.at(rotate=90)>=0.8' --gate 'warn: ekld.overall<=0.1'
                         --gate 'accuracy.mean maxDrop 2%'
                       or a JSON gate: '{"metric":"ekld.overall","op":"<=","value":0.1,"severity":"warn"}'
  --baseline REF       run:<id>, or model:<name>,tag:<tag> (the latest succeeded run of that
                       model name with that tag, on the same dataset and sweep)

Run:
  --name NAME          run name
  --tag TAG            run tag (repeatable, or a,b)
  --timeout DURATION   stop waiting after 90s, 30m, 1h, ... (default: wait as long as it takes);
                       the run is then canceled and the exit code is 3. Ctrl-C cancels it too.

Output (progress goes to stderr: a bar on a terminal, a line every 5 s otherwise):
  --json               print only the final JSON object on stdout: {outcome, run, model, dataset,
                       results, verdict}; on an error before that, {outcome, problem?}
  --junit FILE         JUnit XML, one testcase per gate (FAIL: <failure>, ERROR: <error>,
                       WARN: passes with a note in <system-out>)
  --markdown FILE      a summary for a pull-request comment
  -q, --quiet          no progress

${CONNECTION}

${EXIT_CODES}`,

  models: `invariance models: upload and list ONNX models.

Usage:
  invariance models push <file.onnx> [--name N] [--version V] [--tags a,b] [--preprocessing JSON] [--json]
  invariance models list [--name N] [--tag T] [--limit N] [--json]

push streams the file; the same bytes as an existing model return that model unchanged (reused).
list prints the newest first (--limit, default 50).

${CONNECTION}`,

  datasets: `invariance datasets: upload and list labelled image datasets.

Usage:
  invariance datasets push --images x-idx3-ubyte.gz --labels y-idx1-ubyte.gz [--name N] [--class-names a,b,...] [--json]
  invariance datasets push <file.zip|file.tar|file.tar.gz|file.npz> [--name N] [--class-names ...] [--json]
  invariance datasets list [--name N] [--limit N] [--json]

--class-names takes a,b,c or a JSON array. Uploading the same bytes again returns the existing
dataset (reused).

${CONNECTION}`,

  runs: `invariance runs: inspect, wait for, re-judge and cancel runs.

Usage:
  invariance runs get <id> [--json]
  invariance runs list [--tag T] [--status S] [--verdict PASS|WARN|FAIL|ERROR|NONE] [--model-id ID]
                       [--dataset-id ID] [--limit N] [--json]
  invariance runs wait <id> [--timeout 30m] [--json] [--junit FILE] [--markdown FILE] [-q]
  invariance runs verdict <id> --gate EXPR [--gate ...] [--baseline REF] [--json] [--junit FILE] [--markdown FILE]
  invariance runs cancel <id>

wait exits like eval (0 PASS/WARN/succeeded, 1 FAIL/ERROR, 3 failed/canceled/timeout; a timeout
does not cancel the run). verdict evaluates new gates against a finished run without re-running it
(--gate and --baseline as for eval) and exits 0 for PASS/WARN, 1 for FAIL/ERROR.

${CONNECTION}

${EXIT_CODES}`,
};
