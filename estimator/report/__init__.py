"""What users see beyond one number: carbon and cost, layers grouped by module, readable wording, pictures
(matplotlib, optional) and the self-contained HTML report. Imports only from the stages upstream of it."""
