"""Apache Beam pipelines: selective search into the proposal cache, and batch
detection with the exported SavedModel, on any Beam runner (DirectRunner on one
machine; Dataflow, Flink or Spark on a cluster; docs/scale.md).

Beam is an optional extra (``pip install ".[beam]"``): nothing else in the package
imports it, and a program given Beam options without it says so in one line
(``require_beam``)."""

EXTRA = 'pip install ".[beam]" (or: pip install -r requirements-beam.txt)'
DEAD_LETTER = "dead_letter"  # the tagged output, and the counter, of the images left out


class BeamMissing(ImportError):
    """Apache Beam is not installed; the message names the extra."""


def require_beam(what):
    """Imports apache_beam, or raises BeamMissing saying that ``what`` needs it."""
    try:
        import apache_beam
    except ImportError:
        raise BeamMissing(f"{what} needs Apache Beam, which is not installed: {EXTRA}") from None
    return apache_beam


def pipeline_options(args, program_flags=()):
    """Beam's PipelineOptions of ``args`` (command-line flags, e.g. ``--runner=...``),
    each of which must be an option Beam knows: ValueError naming one it does not, with
    the nearest of Beam's options and the program's own flags (``program_flags``,
    their names), since Beam itself would drop it with a warning."""
    import difflib

    require_beam(f"running as a Beam pipeline ({' '.join(args)})")
    from apache_beam.options import pipeline_options as po

    # Beam's own parser (private, pinned with the extra: requirements-beam.txt), so that
    # every option its PipelineOptions classes define is known, runner options included.
    parser = po._BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in po.PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(args)
    if unknown:
        known = [o for action in parser._actions for o in action.option_strings]
        known += [f"--{name}" for name in program_flags]
        name = unknown[0].split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"{unknown[0]}: neither a flag of this program nor a Beam pipeline "
                         f"option{hint} (--help lists the program's flags)")
    return po.PipelineOptions(args)


class PipelineFailed(RuntimeError):
    """A pipeline run failed for a reason other than a bad image; the message is the
    underlying error's last line."""


def run_pipeline(pipeline):
    """Runs ``pipeline`` and waits for it; returns its result. A runner wraps an error
    raised in a DoFn in its own, with the worker's traceback in its text: a DatasetError
    (a bad image under on_error="raise") comes back as one DatasetError naming the file,
    any other as PipelineFailed with the underlying error's last line (a cache or output
    the workers cannot write, a SavedModel that does not load)."""
    import re

    from keras_frcnn.data.records import DatasetError, dataset_error

    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as err:  # noqa: BLE001 - whatever the runner wraps it in
        raised = err if isinstance(err, DatasetError) else dataset_error(err)
        suffix = r"\s*\[while running .*$"
        if raised is not None:
            raise DatasetError(re.sub(suffix, "", str(raised))) from None
        found = re.findall(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$", str(err), re.M)
        kind, message = found[-1] if found else (type(err).__name__, str(err).strip())
        message = re.sub(suffix, "", message.splitlines()[0] if message else "")
        raise PipelineFailed(f"the pipeline failed: {kind}: {message}") from err
    return result


def counter_totals(result, namespace, names):
    """{name: committed value} of the counters ``names`` of a finished pipeline."""
    import apache_beam as beam

    totals = dict.fromkeys(names, 0)
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(namespace))
    for counter in query["counters"]:
        if counter.key.metric.name in totals:
            totals[counter.key.metric.name] += counter.committed or 0
    return totals


def write_lines(lines, path, label):
    """Writes the PCollection ``lines`` (text, one per element) as the one file ``path``:
    through Beam's WriteToText where Beam's own file systems can write the path (a
    local path; gs:// with apache-beam[gcp], s3:// with [aws]), sharded writes renamed
    into place; else (ram://, or gs:// without Beam's extra) gathered on one worker and
    written whole through tf.io.gfile (keras_frcnn.files.atomic_write)."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    path = str(path)
    try:
        FileSystems.get_filesystem(path)
    except Exception:  # noqa: BLE001 - ValueError, or BeamIOError of a missing extra
        return (lines
                | f"{label}Gather" >> beam.combiners.ToList()
                | label >> beam.Map(_write_all, path))
    return lines | label >> beam.io.WriteToText(path, shard_name_template="", num_shards=1)


def _write_all(lines, path):
    from keras_frcnn.files import atomic_write

    atomic_write(path, "".join(line + "\n" for line in lines))


def with_refused(pipeline, dead_letter, refused):
    """The dead-letter PCollection with ``refused`` (messages of images a reader left out
    before the pipeline) added, one line each."""
    import apache_beam as beam

    if not refused:
        return dead_letter
    lines = [one_line(message) for message in refused]
    return ((pipeline | "Refused" >> beam.Create(lines), dead_letter)
            | "AllDeadLetters" >> beam.Flatten())


def one_line(message):
    """``message`` (an error, or its text) on one line: a dead-letter file's line."""
    return " ".join(str(message).split())


def to_dead_letter(error, on_error, counter):
    """A DoFn's DatasetError ``error``: raised unless ``on_error`` is "skip" (so ""
    raises, as in the library); else counted and returned as the DEAD_LETTER output."""
    import apache_beam as beam

    if on_error != "skip":
        raise error
    counter.inc()
    return beam.pvalue.TaggedOutput(DEAD_LETTER, one_line(error))
