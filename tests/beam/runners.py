"""Beam pipeline options of the tests: DirectRunner in this process (the only way to
reach ram://, which is this process's own) and in two worker processes."""

IN_MEMORY = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
TWO_PROCESSES = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                 "--direct_num_workers=2"]
