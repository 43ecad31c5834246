# Copies the model folder SRC to DST and names an unsupported class in its scheduler config.
file(REMOVE_RECURSE "${DST}")
file(COPY "${SRC}/" DESTINATION "${DST}")
file(READ "${DST}/scheduler/scheduler_config.json" cfg)
string(REPLACE "PNDMScheduler" "LMSDiscreteScheduler" cfg "${cfg}")
file(WRITE "${DST}/scheduler/scheduler_config.json" "${cfg}")
