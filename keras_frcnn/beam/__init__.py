"""Apache Beam pipelines: selective search into the proposal cache, and batch
detection with the exported SavedModel, on any Beam runner (DirectRunner on one
machine; Dataflow, Flink or Spark on a cluster; docs/scale.md).

Beam is an optional extra (``pip install ".[beam]"``): nothing else in the package
imports it, and a program given Beam options without it says so in one line
(``require_beam``)."""

EXTRA = 'pip install ".[beam]" (or: pip install -r requirements-beam.txt)'


class BeamMissing(ImportError):
    """Apache Beam is not installed; the message names the extra."""


def require_beam(what):
    """Imports apache_beam, or raises BeamMissing saying that ``what`` needs it."""
    try:
        import apache_beam
    except ImportError:
        raise BeamMissing(f"{what} needs Apache Beam, which is not installed: {EXTRA}") from None
    return apache_beam


def pipeline_options(args):
    """Beam's PipelineOptions of ``args`` (command-line flags, e.g. ``--runner=...``),
    each of which must be an option Beam knows: ValueError naming one it does not,
    with the nearest known option, since Beam itself would drop it with a warning."""
    import difflib

    require_beam(f"running as a Beam pipeline ({' '.join(args)})")
    from apache_beam.options import pipeline_options as po

    parser = po._BeamArgumentParser(allow_abbrev=False)  # what Beam parses options with
    for cls in {str(c): c for c in po.PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(args)
    if unknown:
        known = [o for action in parser._actions for o in action.option_strings]
        name = unknown[0].split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"{unknown[0]}: neither a flag of this program nor a Beam pipeline "
                         f"option{hint} (--help lists the program's flags)")
    return po.PipelineOptions(args)


def run_pipeline(pipeline):
    """Runs ``pipeline`` and waits for it; returns its result. A DatasetError raised in
    a DoFn (a bad image under on_error="raise"), which the runner wraps in its own
    error with a traceback, comes back as one DatasetError naming the file."""
    import re

    from keras_frcnn.data.records import DatasetError, dataset_error

    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as err:  # noqa: BLE001 - whatever the runner wraps it in
        raised = err if isinstance(err, DatasetError) else dataset_error(err)
        if raised is None:
            raise
        # Without the runner's " [while running 'Step']" suffix.
        raise DatasetError(re.sub(r"\s*\[while running .*$", "", str(raised))) from None
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
